"""Where the one stored shard map lives, per target.

The app, the pgbouncer config and the runbooks all read this one map; the converge renders it
to every host that talks to the shards as `HOST_SHARDMAP_PATH` (the app reads
`PHOTOSTACK_SHARDMAP=/etc/photostack/shardmap.json`). It is created from the stack config once
and afterwards changed only by moves, so a moved logical shard stays moved.

One-box: `<state dir>/shardmap.json`. AWS: the SSM parameter `/photostack/<stack>/shardmap`,
gzip+base64 of the same JSON (6144 placements are ~18 KB of JSON, over SSM's 4 KB standard tier;
gzipped they are a few hundred bytes). Each target's store is in infra/targets/.

The primaries record (which member of each physical shard is primary, written by failovers) is
stored the same way, beside it: `<state dir>/primaries.json` or `/photostack/<stack>/primaries`.
The postgres and pgbouncer roles read it, so a converge after a failover keeps the new topology.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from infra.config import StackConfig
from infra.records import Record, record
from infra.sharding import ShardMap
from infra.targets import target_of

HOST_SHARDMAP_PATH = "/etc/photostack/shardmap.json"


class ShardMapStore(Protocol):
    """The stored map of one stack."""

    def load_or_create(self, config: StackConfig) -> ShardMap:
        """The stored map; the initial one from `config` is stored first if none exists."""
        ...

    def load(self) -> ShardMap | None:
        """The stored map as it is (None when none is stored), whatever the config says."""
        ...

    def save(self, shard_map: ShardMap) -> None:
        """Store a changed map (after a move)."""
        ...

    def check(self, config: StackConfig) -> ShardMap | None:
        """Stop on a config that disagrees with the stored map; read-only (no map: nothing to
        check). Returns the map it read, so a caller that wants it reads the store once."""
        ...


def shard_map_store(config: StackConfig, stack: str) -> ShardMapStore:
    """The store of `stack`'s shard map, on its target (infra/targets/)."""
    return target_of(config).shard_map_store(stack)


def stored_shard_map(config: StackConfig, stack: str) -> ShardMap:
    """The stack's stored shard map; before anything stored one (the one-box's first `ops up`,
    `pulumi up` on AWS), the config's initial map. Reading never writes: `ops status` renders
    roles through here too."""
    return shard_map_store(config, stack).check(config) or ShardMap.initial(config)


# --- Which cluster of each physical shard is its primary (changed only by failovers) ---------

@dataclass(frozen=True)
class ShardRole:
    """The members of one physical shard as stored: the member (0 = `shard<n>`, k = `shard<n>r<k>`)
    that is primary now, and members that wait for a rebuild after a failover (no synchronous
    standby, no reads routed to them, until `ops rebuild-replica` puts them back in service)."""

    primary: int = 0
    rebuilding: tuple[int, ...] = ()


@dataclass(frozen=True)
class Primaries:
    """Every shard's role record; a shard with no record still has its original primary."""

    shards: dict[int, ShardRole] = field(default_factory=dict)

    def of(self, shard: int) -> ShardRole:
        return self.shards.get(shard, ShardRole())

    def failed_over(self, shard: int, new_primary: int) -> Primaries:
        """After promoting member `new_primary`: the old primary waits for its rebuild."""
        old = self.of(shard)
        rebuilding = tuple(sorted({*old.rebuilding, old.primary} - {new_primary}))
        return Primaries({**self.shards, shard: ShardRole(new_primary, rebuilding)})

    def out_of_service(self, shard: int, member: int) -> Primaries:
        """A replica taken out of service to be rebuilt (lost slot, corruption)."""
        old = self.of(shard)
        if member == old.primary:
            raise ValueError(f"member {member} is shard {shard}'s primary; fail over first")
        return Primaries({**self.shards, shard: ShardRole(old.primary, tuple(sorted({*old.rebuilding, member})))})

    def rebuilt(self, shard: int, member: int) -> Primaries:
        """After member `member` streams from the primary again."""
        old = self.of(shard)
        return Primaries({**self.shards, shard: ShardRole(old.primary, tuple(m for m in old.rebuilding if m != member))})

    def to_dict(self) -> dict[str, Any]:
        return {str(s): {"primary": r.primary, "rebuilding": list(r.rebuilding)} for s, r in sorted(self.shards.items())}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Primaries:
        return cls({int(s): ShardRole(int(r["primary"]), tuple(int(m) for m in r["rebuilding"]))
                    for s, r in (data or {}).items()})


class PrimariesStore:
    """The stored primaries of one stack (the record `primaries`, infra/records.py)."""

    def __init__(self, stored: Record):
        self.stored = stored

    def load(self) -> Primaries:
        return Primaries.from_dict(self.stored.load())

    def save(self, primaries: Primaries) -> None:
        self.stored.save(primaries.to_dict())


def primaries_store(config: StackConfig, stack: str) -> PrimariesStore:
    """The store of `stack`'s primaries record."""
    return PrimariesStore(record(config, stack, "primaries"))


def stored_primaries(config: StackConfig, stack: str) -> Primaries:
    """Which member of each shard is primary now (the original ones until a failover)."""
    return primaries_store(config, stack).load()
