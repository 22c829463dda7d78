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

Connections: one psycopg_pool per physical shard database (pgbouncer `shard{n}`), autocommit,
`prepare_threshold=None` (pgbouncer transaction pooling: no server-side prepared statements, no
session state; every table name is schema-qualified).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

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

    def __init__(self, shard_map: ShardMap, dsn_for_db: Callable[[str], str], epoch_ms: int, pool_max: int = 8) -> None:
        self.shard_map = shard_map
        self.epoch_ms = epoch_ms
        self._dsn_for_db = dsn_for_db
        self._pool_max = pool_max
        self._pools: dict[int, ConnectionPool] = {}
        self._lock = threading.Lock()

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


def load_shard_map(config: AppConfig) -> ShardMap:
    """The stored shard map named by PHOTOSTACK_SHARDMAP."""
    return ShardMap.from_json(config.shardmap_path.read_text())


_router_lock = threading.Lock()


@functools.cache
def router() -> ShardRouter:
    """This process's shard router (pools open lazily, so it is safe to create before a fork)."""
    with _router_lock:  # functools.cache alone may build two routers in racing threads
        return _build_router()


@functools.lru_cache(maxsize=1)
def _build_router() -> ShardRouter:
    config = app_config()
    return ShardRouter(load_shard_map(config), config.physical_dsn, config.id_epoch_ms, config.db_pool_max)
