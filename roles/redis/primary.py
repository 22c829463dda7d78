"""Which Redis node is the primary now: the one the stack's `redis` record names (written by
`ops redis-failover`, ops/redis_failover.py), the planned primary (replica 0, node
`redis-primary`) until a failover. Node names are positions, not roles: after a failover
`redis-replica1` may be the primary and `redis-primary` its replica.

The redis role (which node replicates from which), app.env (the app's and workers' Redis) and
Munin (the app's counters are read on the primary) render from it (infra/records.py
`RENDERED_BY`), so any converge after a failover keeps the new topology.
"""

from __future__ import annotations

from infra.config import StackConfig
from infra.records import record
from infra.topology import Node, nodes

RECORD = "redis"  # {"primary": member}; None (nothing stored): member 0


def stored_primary(config: StackConfig, stack: str) -> int:
    """The member (the node's `replica` attribute) that is the Redis primary now."""
    stored = record(config, stack, RECORD).load()
    return int(stored["primary"]) if stored else 0


def save_primary(config: StackConfig, stack: str, member: int) -> None:
    """Record member `member` as the Redis primary."""
    record(config, stack, RECORD).save({"primary": member})


def redis_nodes(config: StackConfig) -> list[Node]:
    """Every Redis node of the topology, by member (0: the planned primary)."""
    return sorted((n for n in nodes(config) if n.role == "redis"), key=lambda n: n.attrs["replica"])


def primary_node(config: StackConfig, stack: str) -> Node:
    """The Redis node that is the primary now (from the topology: found whether or not its host runs)."""
    member = stored_primary(config, stack)
    found = [n for n in redis_nodes(config) if n.attrs["replica"] == member]
    if not found:  # a record naming a member the config no longer has (redis.replicas lowered)
        raise LookupError(f"the stored Redis primary is member {member}, which stack '{stack}' does not have "
                          f"(redis.replicas is {config.redis.replicas})")
    return found[0]
