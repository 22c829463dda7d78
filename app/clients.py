"""Process-wide clients of Redis (feeds, counters) and Memcached (hydrated objects).

Both are created on first use, i.e. after gunicorn / Celery fork their workers, and are
thread-safe (redis-py's connection pool; pymemcache's pooled HashClient).
"""

from __future__ import annotations

import functools
import zlib

import redis
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.client.rendezvous import RendezvousHash

from app.config import app_config


@functools.cache
def redis_client() -> redis.Redis:
    """The Redis client (feeds, counters; sessions use Django's cache on the same server)."""
    return redis.Redis.from_url(app_config().redis_url, socket_timeout=2.0, socket_connect_timeout=1.0)


def _crc32(key: str, seed: int) -> int:
    return zlib.crc32(key.encode(), seed)


@functools.cache
def memcache_client() -> PooledClient | HashClient:
    """The Memcached client; a down server is a miss, never an error on the request path.

    One server: a plain pooled client (no per-key hashing). Several: rendezvous hashing with
    CRC32, which is C code (pymemcache's default murmur3 is pure Python: ~10 µs per key per
    server, a visible share of a 30-photo feed read)."""
    servers = list(app_config().memcached)
    common = {"connect_timeout": 0.5, "timeout": 0.5, "ignore_exc": True}
    if len(servers) == 1:
        return PooledClient(servers[0], max_pool_size=32, **common)
    return HashClient(
        servers,
        hasher=lambda: RendezvousHash(hash_function=_crc32),
        use_pooling=True,
        retry_attempts=1,
        dead_timeout=5,
        **common,
    )
