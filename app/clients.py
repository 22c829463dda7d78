"""Process-wide clients of Redis (feeds, counters) and Memcached (hydrated objects).

Both are created on first use, i.e. after gunicorn / Celery fork their workers, and are
thread-safe (redis-py's connection pool; pymemcache's pooled HashClient).
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
import zlib

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.client.rendezvous import RendezvousHash
from pymemcache.exceptions import MemcacheError

from app.config import app_config

log = logging.getLogger(__name__)

# A cache server that failed is left alone this long (per process): a hung one would otherwise
# cost every request its full socket timeout, one call after another.
CACHE_COOLDOWN_S = 1.0
# The second delete of delete_twice, and how soon after its read a refill must be written to be
# sure that delete catches it (half of it: room for a late timer and the write itself).
REDELETE_AFTER_S = 1.0
REFILL_WITHIN_S = REDELETE_AFTER_S / 2


# Every Redis client of the app (also the sessions' Django cache). A Redis answers in about a
# millisecond, so these bound what a hung or unreachable one costs a request. One immediate
# retry on a new connection, for a pooled connection a Redis restart closed; no retry after a
# timeout (redis-py 8's default is 10 retries with backoff for both: seconds per call).
REDIS_OPTIONS = {
    "socket_timeout": 0.5,
    "socket_connect_timeout": 0.25,
    "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
}


@functools.cache
def redis_client() -> redis.Redis:
    """The Redis client (feeds, counters; sessions use Django's cache on the same server)."""
    return redis.Redis.from_url(app_config().redis_url, **REDIS_OPTIONS)


def _crc32(key: str, seed: int) -> int:
    return zlib.crc32(key.encode(), seed)


class FailOpenCache:
    """The Memcached calls the app makes, none of which can fail a request: a read that fails is
    a miss, a write or delete that fails is dropped (the record is a copy; the shards hold the
    truth). After a failure the cache is skipped for CACHE_COOLDOWN_S, so a hung server costs
    a request at most one socket timeout per cooldown, not one per call."""

    def __init__(self, client: PooledClient | HashClient) -> None:
        self.client = client
        self._skip_until = 0.0
        self._redeletes: queue.SimpleQueue[tuple[float, str]] = queue.SimpleQueue()
        # Started on first use: after gunicorn or Celery forked (threads do not survive a fork).
        self._redeleter = threading.Thread(target=self._redelete_loop, name="memcache-redelete", daemon=True)
        self._redeleter_lock = threading.Lock()

    def _available(self) -> bool:
        return time.monotonic() >= self._skip_until

    def _failed(self, what: str, exc: Exception) -> None:
        if self._available():  # the first failure of an outage is logged, not every call
            log.warning("memcached %s failed, skipping the cache for %.0f s: %r", what, CACHE_COOLDOWN_S, exc)
        self._skip_until = time.monotonic() + CACHE_COOLDOWN_S

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        """The values found (a failure is a miss of every key)."""
        if not self._available():
            return {}
        try:
            return self.client.get_many(keys)
        except (MemcacheError, OSError) as exc:
            self._failed("get", exc)
            return {}

    def set_many(self, values: dict[str, str], expire: int) -> None:
        """Store values without waiting for the answer (noreply)."""
        if not self._available():
            return
        try:
            self.client.set_many(values, expire=expire, noreply=True)
        except (MemcacheError, OSError) as exc:
            self._failed("set", exc)

    def delete(self, key: str) -> None:
        """Delete a key without waiting for the answer (noreply)."""
        if not self._available():
            return
        try:
            self.client.delete(key, noreply=True)
        except (MemcacheError, OSError) as exc:
            self._failed("delete", exc)

    def delete_twice(self, key: str) -> None:
        """Delete a key now and again REDELETE_AFTER_S later: a reader that read the row before
        the change and refills the cache after the first delete (within REFILL_WITHIN_S of its
        read, see photos.py) has its stale copy removed by the second."""
        self.delete(key)
        self._redeletes.put((time.monotonic() + REDELETE_AFTER_S, key))
        if not self._redeleter.is_alive():
            with self._redeleter_lock:
                if not self._redeleter.is_alive():
                    self._redeleter.start()

    def _redelete_loop(self) -> None:
        """Second deletes, in the order they were asked for (each due REDELETE_AFTER_S after)."""
        while True:
            due, key = self._redeletes.get()
            time.sleep(max(0.0, due - time.monotonic()))
            self.delete(key)


@functools.cache
def memcache_client() -> FailOpenCache:
    """The Memcached client of the app's configured servers (fail_open_cache)."""
    return fail_open_cache(list(app_config().memcached))


def fail_open_cache(servers: list[str]) -> FailOpenCache:
    """A Memcached client where a down server is a miss, never an error on the request path.

    One server: a plain pooled client (no per-key hashing), whose errors reach FailOpenCache so
    that it skips the cache for its cooldown; pymemcache's own `ignore_exc` would turn a read's
    timeout into a silent miss, and a dead host (no reset, only silence) would cost every read
    its connect timeout. Several: rendezvous hashing with CRC32, which is C code (pymemcache's
    default murmur3 is pure Python: ~10 µs per key per server, a visible share of a 30-photo
    feed read); HashClient sets a failing server aside itself (retry_attempts, dead_timeout)."""
    # Memcached answers a connect within a millisecond on the VPC: a longer wait is a dead host.
    common = {"connect_timeout": 0.2, "timeout": 0.5}
    if len(servers) == 1:
        return FailOpenCache(PooledClient(servers[0], max_pool_size=32, **common))
    return FailOpenCache(HashClient(
        servers,
        hasher=lambda: RendezvousHash(hash_function=_crc32),
        use_pooling=True,
        retry_attempts=1,
        dead_timeout=5,
        ignore_exc=True,
        **common,
    ))
