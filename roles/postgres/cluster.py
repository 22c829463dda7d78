"""The Postgres clusters of a stack: names, ports, data dirs, and who replicates from whom.

Every postgres node is one cluster: member 0 of physical shard n is named `shard<n>`, member k
`shard<n>r<k>`, on the one-box (each on its own port) and on AWS (one per host) alike. Member 0
is the primary until a failover promotes another; which member is primary now is stored state
(infra/shardstore.py `Primaries`), so names never change but roles may. pgbouncer, the runbooks
and monitoring find clusters through these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.host_layout import POSTGRES_DATA
from infra.shardstore import HOST_SHARDMAP_PATH, Primaries, stored_primaries, stored_shard_map
from infra.topology import Node
from roles.context import RoleContext
from roles.engine.resources import File

SOCKET_DIR = "/var/run/postgresql"
PASSFILE = f"{POSTGRES_DATA}/.pgpass"  # in the postgres account's home


@dataclass(frozen=True)
class Cluster:
    """One Postgres cluster: member `replica` of its physical shard (0 = the original primary)."""

    version: int
    shard: int
    replica: int
    address: str  # where peers reach it
    port: int
    acting_primary: int = 0  # the member that is primary now (stored state; changed by failovers)
    in_service: bool = True  # False while a former primary waits for its rebuild as a replica

    @property
    def name(self) -> str:
        return f"shard{self.shard}" if self.replica == 0 else f"shard{self.shard}r{self.replica}"

    @property
    def is_primary(self) -> bool:
        return self.replica == self.acting_primary

    @property
    def database(self) -> str:
        """The one database of the physical shard (same name on its replicas)."""
        return f"shard{self.shard}"

    @property
    def config_dir(self) -> str:
        return f"/etc/postgresql/{self.version}/{self.name}"

    @property
    def data_dir(self) -> str:
        return f"{POSTGRES_DATA}/{self.version}/{self.name}"

    @property
    def slot(self) -> str:
        """The replication slot a replica holds on its primary (also its application_name)."""
        return self.name


def cluster_of(ctx: RoleContext, node: Node) -> Cluster:
    """The cluster a postgres node runs, with its current role from the stored primaries."""
    return _cluster(ctx, node, stored_primaries(ctx.config, ctx.stack))


def all_clusters(ctx: RoleContext) -> list[Cluster]:
    """Every cluster of the stack, in topology order."""
    # One read of the stored primaries for all of them (on AWS each read is an SSM call, and the
    # munin master's config asks for every cluster once per host), and one consistent view.
    primaries = stored_primaries(ctx.config, ctx.stack)
    return [_cluster(ctx, n, primaries) for h in ctx.hosts for n in h.nodes_of("postgres")]


def _cluster(ctx: RoleContext, node: Node, primaries: Primaries) -> Cluster:
    shard, member = node.attrs["shard"], node.attrs["replica"]
    role = primaries.of(shard)
    return Cluster(
        ctx.config.postgres.version, shard, member, ctx.address(node), ctx.port(node),
        acting_primary=role.primary, in_service=member not in role.rebuilding,
    )


def primary_of(ctx: RoleContext, cluster: Cluster) -> Cluster:
    """The primary a cluster's shard streams from (itself for a primary)."""
    return next(c for c in all_clusters(ctx) if c.shard == cluster.shard and c.is_primary)


def replicas_of(ctx: RoleContext, cluster: Cluster) -> list[Cluster]:
    """The replicas of a primary (in service or waiting for their rebuild)."""
    return [c for c in all_clusters(ctx) if c.shard == cluster.shard and not c.is_primary]


def shard_clusters(ctx: RoleContext, shard: int) -> list[Cluster]:
    """Every member of one physical shard, primary first."""
    return sorted((c for c in all_clusters(ctx) if c.shard == shard), key=lambda c: not c.is_primary)


def shard_map_file(ctx: RoleContext) -> File:
    """The stored shard map, rendered for the app, pgbouncer and runbooks on this host.

    JSON has no comments, so unlike templates it carries no managed-by header; its source of
    truth is the store in infra/shardstore.py.
    """
    return File(HOST_SHARDMAP_PATH, stored_shard_map(ctx.config, ctx.stack).to_json() + "\n")
