"""Fixtures of the data tier tests: the converged one-box, its secrets and where each server listens."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import pytest

from infra.shardstore import stored_primaries, stored_shard_map
from infra.sharding import ShardMap
from ops.stack import Stack


@dataclass(frozen=True)
class DataTier:
    """The one-box data tier as a client sees it."""

    stack: Stack
    shard_map: ShardMap

    @property
    def box(self):
        return self.stack.config.onebox

    def secret(self, name: str) -> str:
        return self.stack.secret(name)

    def member_port(self, shard: int, member: int) -> int:
        return self.box.postgres_base_port + shard * (self.stack.config.postgres.replicas_per_shard + 1) + member

    def primary_member(self, shard: int) -> int:
        """The member that is primary now: the original one until a failover (stored state)."""
        return stored_primaries(self.stack.config, self.stack.name).of(shard).primary

    def replica_member(self, shard: int) -> int:
        return next(m for m in range(self.stack.config.postgres.replicas_per_shard + 1)
                    if m != self.primary_member(shard))

    def primary_port(self, shard: int) -> int:
        return self.member_port(shard, self.primary_member(shard))

    def replica_port(self, shard: int) -> int:
        return self.member_port(shard, self.replica_member(shard))

    def replica_name(self, shard: int) -> str:
        """The cluster name of the shard's first replica (also its slot and application_name)."""
        member = self.replica_member(shard)
        return f"shard{shard}" if member == 0 else f"shard{shard}r{member}"

    def connect(
        self, port: int, dbname: str, user: str = "photostack", secret: str = "dbPassword",
        password: str | None = None, **kwargs,
    ) -> psycopg.Connection:
        """A connection (autocommit) to a Postgres cluster or pgbouncer as `user`, with the password
        held by `secret` unless a (wrong) `password` is given. Passwords are looked up here so
        that no test's traceback shows one."""
        return psycopg.connect(
            host=self.box.address, port=port, dbname=dbname, user=user, connect_timeout=5, autocommit=True,
            password=self.secret(secret) if password is None else password, **kwargs,
        )

    def pgbouncer(self, dbname: str, **kwargs) -> psycopg.Connection:
        # Transaction pooling: no server-side prepared statements across transactions.
        return self.connect(self.box.pgbouncer_port, dbname, prepare_threshold=None, **kwargs)


@pytest.fixture(scope="session")
def datatier(onebox: Stack) -> DataTier:
    """The data tier, converged for real by `ops up`."""
    return DataTier(onebox, stored_shard_map(onebox.config, onebox.name))
