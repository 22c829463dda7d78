"""Where each physical shard's primary is now: the stored primaries (changed by failovers), so
the benches that talk to a primary directly follow `ops failover` instead of writing to what
became a read-only replica."""

from __future__ import annotations

from ops.stack import Stack
from roles.postgres.cluster import all_clusters


def primary_port(stack: Stack, shard: int) -> int:
    """The one-box port of the cluster that is physical shard `shard`'s primary now."""
    clusters = all_clusters(stack.context(stack.hosts[0]))
    return next(c.port for c in clusters if c.shard == shard and c.is_primary)
