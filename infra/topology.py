"""What runs where: the stack config expanded into service instances, for any target.

A `Node` is one instance of a role (one nginx, one Postgres shard primary, one replica …) with
the AZ it belongs in. The Pulumi program gives each node its own EC2 host; the one-box puts all
of them on this machine, each on its own port. Both read this one list, so AWS and one-box
cannot disagree about the shape of the stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from infra.config import StackConfig

# Every role, in converge order: data and queues before the app that needs them, the app before
# nginx routes to it (infra/inventory.py orders each host's roles so).
Role = Literal[
    "base",
    "postgres",
    "pgbouncer",
    "redis",
    "memcached",
    "rabbitmq",
    "app",
    "worker",
    "nginx",
    "munin_node",
    "munin_master",
]

# Where each service listens on a dedicated host (AWS); the one-box shifts them (config.onebox),
# the security groups open them.
STANDARD_PORTS = {
    "nginx": 80,
    "app": 8001,
    "postgres": 5432,
    "pgbouncer": 6432,
    "redis": 6379,
    "memcached": 11211,
    "rabbitmq": 5672,
    "munin_node": 4949,
}

# Roles every host runs in addition to its own.
COMMON_ROLES: tuple[Role, ...] = ("base", "munin_node")


@dataclass(frozen=True)
class Node:
    """One instance of a service role."""

    role: Role
    index: int
    az: str
    # Role-specific facts: for postgres {"shard": n, "replica": 0 (primary) or k}; for redis {"replica": k}.
    attrs: dict[str, int] = field(default_factory=dict, hash=False, compare=False)

    @property
    def name(self) -> str:
        if self.role == "postgres":
            kind = "primary" if self.attrs["replica"] == 0 else f"replica{self.attrs['replica']}"
            return f"postgres-{self.attrs['shard']}-{kind}"
        if self.role == "redis":
            return "redis-primary" if self.attrs["replica"] == 0 else f"redis-replica{self.attrs['replica']}"
        return f"{self.role}-{self.index}"


def _az(config: StackConfig, index: int) -> str:
    return config.availability_zones[index % len(config.availability_zones)]


def nodes(config: StackConfig) -> list[Node]:
    """Every service instance of the stack, in a stable order."""
    result: list[Node] = []
    for role in ("nginx", "app", "worker"):
        fleet = getattr(config.fleets, role)
        result += [Node(role, i, _az(config, i)) for i in range(fleet.count)]
    pg = config.postgres
    for shard in range(pg.physical_shards):
        # The primary's AZ rotates with the shard; replica k sits k zones further on, so never
        # in the primary's zone (config validation guarantees enough zones on AWS).
        for replica in range(pg.replicas_per_shard + 1):
            index = shard * (pg.replicas_per_shard + 1) + replica
            result.append(
                Node("postgres", index, _az(config, shard + replica), {"shard": shard, "replica": replica})
            )
    for replica in range(config.redis.replicas + 1):
        result.append(Node("redis", replica, _az(config, replica), {"replica": replica}))
    result += [Node("memcached", i, _az(config, i)) for i in range(config.memcached.count)]
    result += [Node("rabbitmq", i, _az(config, i)) for i in range(config.rabbitmq.nodes)]
    result.append(Node("munin_master", 0, _az(config, 0)))
    return result
