"""Small operational records of a stack, stored where every operator and host can read them.

One-box: `<state dir>/<name>.json`. AWS: the SSM parameter `/photostack/<stack>/<name>` (plain
JSON; these records are a few hundred bytes); each target's store is in infra/targets/. Roles
render from them (the primaries after a failover, the app servers drained by a deploy), so a
converge keeps what an operation changed.
"""

from __future__ import annotations

from typing import Any, Protocol

from infra.config import StackConfig
from infra.targets import target_of

# The converge roles that render from each record (the shard map is one too: infra/shardstore.py).
# An operation that changes a record converges these roles wherever they run, so that a converge
# afterwards finds nothing left to change; tests/test_record_readers.py renders every role under
# two values of each record and holds this table to what the roles really read.
RENDERED_BY: dict[str, frozenset[str]] = {
    "shardmap": frozenset({"postgres", "pgbouncer", "app"}),
    # munin: each postgres node's plugins follow its current role (lag is read on the primary)
    "primaries": frozenset({"postgres", "pgbouncer", "munin_node", "munin_master"}),
    "release": frozenset({"app", "worker"}),
    "drained": frozenset({"nginx"}),
    # which Redis node is primary (roles/redis/primary.py): replication, app.env, the counters' plugins
    "redis": frozenset({"redis", "app", "worker", "munin_node"}),
}


def readers(*names: str) -> set[str]:
    """The roles that render from any of the records `names` (RENDERED_BY)."""
    return set().union(*(RENDERED_BY[name] for name in names))


class Record(Protocol):
    """One named JSON record of a stack."""

    def load(self) -> Any:
        """The stored value, or None when nothing was stored yet."""
        ...

    def save(self, value: Any) -> None:
        ...


def record(config: StackConfig, stack: str, name: str) -> Record:
    """The record `name` of `stack`, on its target's store (infra/targets/)."""
    return target_of(config).record(stack, name)
