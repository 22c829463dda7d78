"""The shard router: object id → logical shard → physical shard → pooled connection.

Placement (Instagram, 2012):
- A user lives on the logical shard `username_shard(username)`: a stable hash of the
  (lower-cased) username. Their id comes from that shard's `next_id()`, so the shard is also
  encoded in the id.
- Every other object lives on its owner's logical shard and takes its id from that shard's
  `next_id()`: a photo on its poster's shard; likes and comments on their *photo's* shard (the
  photo owns them, so a like and its count update are one single-shard statement); the two
  halves of a follow edge on each side's shard (`following` on the follower's, `followers` on
  the followee's).
- Routing an object by id therefore needs no lookup table: `decode_id(id).logical_shard`.

The global username index: because a user's logical shard is a pure function of the username,
`{schema}.users.username` being UNIQUE in that one schema makes usernames globally unique, and
looking a username up is one indexed query on one shard — no separate index shard, no
two-phase write at sign-up. The price: usernames cannot be renamed in place (a rename would be
a move to another shard); photostack has no renames.

The map is re-read when its file changes (checked with one stat per `router()` call, a few
microseconds): a move's flip rewrites /etc/photostack/shardmap.json on every host, and every
process routes by the new map from its next request on, without a restart. Pools stay open.

Connections: one psycopg_pool per physical shard database (pgbouncer `shard{n}`), autocommit,
`prepare_threshold=None` (pgbouncer transaction pooling: no server-side prepared statements, no
session state; every table name is schema-qualified).
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg_pool import ConnectionPool

from app.config import AppConfig, app_config
from app.errors import NotFound
from infra.sharding import ShardMap, decode_id, physical_db, schema_name


# Longest a request waits for a pooled connection (all lent out, or pgbouncer unreachable and
# the pool reconnecting): then psycopg_pool.PoolTimeout, a 503 (app/admission.py). A healthy
# pool lends at once (each process has as many connections per shard as threads).
POOL_WAIT_S = 0.5


def username_shard(username: str, logical_shards: int) -> int:
    """The logical shard of a username (and of its user): stable across processes and releases."""
    digest = hashlib.blake2b(username.lower().encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % logical_shards


class ShardRouter:
    """Maps ids and usernames to schemas and pooled connections of their physical shard."""

    def __init__(self, shard_map: ShardMap, dsn_for_db: Callable[[str], str], epoch_ms: int, pool_max: int = 8,
                 source: Path | None = None) -> None:
        self.shard_map = shard_map
        self.source = source  # the map's file, re-read when it changes (None: a fixed map)
        self._seen: tuple[int, int, int] | None = None  # so the first refresh reads the file once more
        self.epoch_ms = epoch_ms
        self._dsn_for_db = dsn_for_db
        self._pool_max = pool_max
        self._pools: dict[int, ConnectionPool] = {}
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Route by the map file's new contents if it changed since it was read (a move's flip).
        A file that cannot be read or parsed keeps the map in use: it is replaced atomically, so
        that only happens while an operator breaks it by hand."""
        if self.source is None:
            return
        stamp = _file_stamp(self.source)
        if stamp == self._seen:
            return
        try:
            shard_map = ShardMap.from_json(self.source.read_text())
        except (OSError, ValueError, KeyError):
            return
        with self._lock:
            self.shard_map = shard_map
            self._seen = stamp

    def logical_of(self, object_id: int) -> int:
        """The logical shard encoded in an id; NotFound if no shard could hold it (a made-up id)."""
        if not 0 < object_id < 1 << 63:
            raise NotFound(f"no object {object_id}")
        logical = decode_id(object_id, self.epoch_ms).logical_shard
        if logical >= self.shard_map.logical_shards:
            raise NotFound(f"no object {object_id}")
        return logical

    def schema_of(self, object_id: int) -> str:
        """The schema holding an object (and everything its owner owns)."""
        return schema_name(self.logical_of(object_id))

    def physical_of(self, object_id: int) -> int:
        """The physical shard holding an object."""
        return self.shard_map.physical_of(self.logical_of(object_id))

    def pool(self, physical: int) -> ConnectionPool:
        """The connection pool of a physical shard's primary, opened on first use (after a fork)."""
        pool = self._pools.get(physical)
        if pool is None:
            with self._lock:
                pool = self._pools.get(physical)
                if pool is None:
                    pool = ConnectionPool(
                        self._dsn_for_db(physical_db(physical)),
                        min_size=1,
                        max_size=self._pool_max,
                        kwargs={"autocommit": True, "prepare_threshold": None},
                        name=f"shard{physical}",
                        timeout=POOL_WAIT_S,
                        open=False,
                    )
                    pool.open(wait=False)
                    self._pools[physical] = pool
        return pool

    @contextmanager
    def connection(self, physical: int) -> Iterator[psycopg.Connection]:
        """A pooled autocommit connection to a physical shard (use `conn.transaction()` for more).

        A connection found dead (pgbouncer or the shard restarted) has dead siblings idle in the
        pool: they are checked at once, so the restart fails one request per pool, not one per
        pooled connection."""
        pool = self.pool(physical)
        with pool.connection() as conn:
            try:
                yield conn
            except psycopg.OperationalError:
                if conn.broken:
                    pool.check()
                raise

    @contextmanager
    def for_object(self, object_id: int) -> Iterator[tuple[psycopg.Connection, str]]:
        """A connection to the physical shard of an object, with the object's schema name."""
        logical = self.logical_of(object_id)
        with self.connection(self.shard_map.physical_of(logical)) as conn:
            yield conn, schema_name(logical)

    def group_by_physical(self, object_ids: Iterable[int]) -> dict[int, list[int]]:
        """Ids grouped by their physical shard (to read many objects in one query per shard)."""
        groups: dict[int, list[int]] = {}
        for object_id in object_ids:
            groups.setdefault(self.physical_of(object_id), []).append(object_id)
        return groups

    def close(self) -> None:
        """Close every pool (tests, worker shutdown)."""
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is replaced or rewritten."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def load_shard_map(config: AppConfig) -> ShardMap:
    """The stored shard map named by PHOTOSTACK_SHARDMAP."""
    return ShardMap.from_json(config.shardmap_path.read_text())


_router_lock = threading.Lock()


def router() -> ShardRouter:
    """This process's shard router (pools open lazily, so it is safe to create before a fork),
    routing by the newest shard map on disk."""
    shard_router = _router()
    shard_router.refresh()
    return shard_router


@functools.cache
def _router() -> ShardRouter:
    with _router_lock:  # functools.cache alone may build two routers in racing threads
        return _build_router()


@functools.lru_cache(maxsize=1)
def _build_router() -> ShardRouter:
    config = app_config()
    return ShardRouter(load_shard_map(config), config.physical_dsn, config.id_epoch_ms, config.db_pool_max,
                       source=config.shardmap_path)


# How long a client should wait before retrying a write to a moving logical shard: the cut-over
# (runbooks/reshard.md) pauses its writes for about a second.
MOVING_RETRY_AFTER_S = 1


class MovingShardMiddleware:
    """Answers 503 + Retry-After to a write refused because its logical shard is being moved.

    A move's cut-over revokes the app's INSERT/UPDATE/DELETE on the moving schema (ops/reshard.py):
    that stops every write to that one logical shard, from every app host and every stale
    router, at the database, while reads and every other logical shard carry on. The app holds
    these privileges at all other times, so "permission denied" means a cut-over in progress.
    """

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception: Exception):
        if not isinstance(exception, psycopg.errors.InsufficientPrivilege):
            return None
        from django.http import JsonResponse  # the router itself is used outside Django too

        response = JsonResponse({"error": "this account's data is being moved; retry in a moment"}, status=503)
        response["Retry-After"] = str(MOVING_RETRY_AFTER_S)
        return response
