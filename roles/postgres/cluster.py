"""The Postgres clusters of a stack: names, ports, data dirs, and who replicates from whom.

Every postgres node (shard primary or replica) is one cluster, named `shard<n>` for a primary and
`shard<n>r<k>` for its k-th replica, on the one-box (each on its own port) and on AWS (one per
host) alike. pgbouncer, the runbooks and monitoring find clusters through these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.shardstore import HOST_SHARDMAP_PATH, stored_shard_map
from infra.topology import Node
from roles.engine.context import RoleContext
from roles.engine.resources import File

SOCKET_DIR = "/var/run/postgresql"
PASSFILE = "/var/lib/postgresql/.pgpass"


@dataclass(frozen=True)
class Cluster:
    """One Postgres cluster: a shard's primary (replica == 0) or one of its replicas."""

    version: int
    shard: int
    replica: int
    address: str  # where peers reach it
    port: int

    @property
    def name(self) -> str:
        return f"shard{self.shard}" if self.replica == 0 else f"shard{self.shard}r{self.replica}"

    @property
    def is_primary(self) -> bool:
        return self.replica == 0

    @property
    def database(self) -> str:
        """The one database of the physical shard (same name on its replicas)."""
        return f"shard{self.shard}"

    @property
    def config_dir(self) -> str:
        return f"/etc/postgresql/{self.version}/{self.name}"

    @property
    def data_dir(self) -> str:
        return f"/var/lib/postgresql/{self.version}/{self.name}"

    @property
    def slot(self) -> str:
        """The replication slot a replica holds on its primary (also its application_name)."""
        return self.name


def cluster_of(ctx: RoleContext, node: Node) -> Cluster:
    """The cluster a postgres node runs."""
    return Cluster(
        ctx.config.postgres.version, node.attrs["shard"], node.attrs["replica"], ctx.address(node), ctx.port(node)
    )


def all_clusters(ctx: RoleContext) -> list[Cluster]:
    """Every cluster of the stack, in topology order."""
    return [cluster_of(ctx, n) for h in ctx.hosts for n in h.nodes_of("postgres")]


def primary_of(ctx: RoleContext, cluster: Cluster) -> Cluster:
    """The primary a cluster's shard streams from (itself for a primary)."""
    return next(c for c in all_clusters(ctx) if c.shard == cluster.shard and c.is_primary)


def replicas_of(ctx: RoleContext, cluster: Cluster) -> list[Cluster]:
    """The replicas of a primary."""
    return [c for c in all_clusters(ctx) if c.shard == cluster.shard and not c.is_primary]


def shard_map_file(ctx: RoleContext) -> File:
    """The stored shard map, rendered for the app, pgbouncer and runbooks on this host.

    JSON has no comments, so unlike templates it carries no managed-by header; its source of
    truth is the store in infra/shardstore.py.
    """
    return File(HOST_SHARDMAP_PATH, stored_shard_map(ctx.config, ctx.stack).to_json() + "\n")
