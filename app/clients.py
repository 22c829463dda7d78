"""Process-wide clients of Redis (feeds, counters) and Memcached (hydrated objects).

Both are created on first use, i.e. after gunicorn / Celery fork their workers, and are
thread-safe (redis-py's connection pool; pymemcache's pooled HashClient).
"""

from __future__ import annotations

import functools

import redis
from pymemcache.client.hash import HashClient

from app.config import app_config


@functools.cache
def redis_client() -> redis.Redis:
    """The Redis client (feeds, counters; sessions use Django's cache on the same server)."""
    return redis.Redis.from_url(app_config().redis_url, socket_timeout=2.0, socket_connect_timeout=1.0)


@functools.cache
def memcache_client() -> HashClient:
    """The Memcached client; a down server is a miss, never an error on the request path."""
    return HashClient(
        list(app_config().memcached),
        use_pooling=True,
        connect_timeout=0.5,
        timeout=0.5,
        ignore_exc=True,
        retry_attempts=1,
        dead_timeout=5,
    )
