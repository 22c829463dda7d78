"""Django's Redis cache backend (sessions live in it), with one redis-py client per pool.

Django's RedisCacheClient builds a new `redis.Redis` for every cache call; with redis-py 8 that
constructor (response-callback tables, observability hooks) cost more CPU than the round trip
itself: 22% of a gunicorn worker's GIL time under mixed load (py-spy --gil) went to session
loads. `redis.Redis` is thread-safe, so one per pool is enough.
"""

from __future__ import annotations

import threading

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class ReusedClientRedisCacheClient(RedisCacheClient):
    """RedisCacheClient that keeps the client it builds for each connection pool."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}
        self._clients_lock = threading.Lock()

    def get_client(self, key=None, *, write=False):
        """The (shared, thread-safe) client of the pool a read or write goes to."""
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            with self._clients_lock:
                client = self._clients.get(index)
                if client is None:
                    client = self._client(connection_pool=self._get_connection_pool(write))
                    self._clients[index] = client
        return client


class SharedClientRedisCache(RedisCache):
    """`django.core.cache.backends.redis.RedisCache` using ReusedClientRedisCacheClient."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = ReusedClientRedisCacheClient
