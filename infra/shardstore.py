"""Where the one stored shard map lives, per target.

The app, the pgbouncer config and the runbooks all read this one map; the converge renders it
to every host that talks to the shards as `HOST_SHARDMAP_PATH` (the app reads
`PHOTOSTACK_SHARDMAP=/etc/photostack/shardmap.json`). It is created from the stack config once
and afterwards changed only by moves, so a moved logical shard stays moved.

One-box: `<state dir>/shardmap.json`. AWS: the SSM parameter `/photostack/<stack>/shardmap`,
gzip+base64 of the same JSON (6144 placements are ~18 KB of JSON, over SSM's 4 KB standard tier;
gzipped they are a few hundred bytes).

The primaries record (which member of each physical shard is primary, written by failovers) is
stored the same way, beside it: `<state dir>/primaries.json` or `/photostack/<stack>/primaries`.
The postgres and pgbouncer roles read it, so a converge after a failover keeps the new topology.
"""

from __future__ import annotations

import base64
import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from infra.config import ConfigError, StackConfig
from infra.records import Record, record
from infra.sharding import SHARDMAP_FILE, ShardMap
from infra.state import state_dir

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


class FileShardMapStore:
    """The one-box store: a JSON file in the state dir."""

    def __init__(self, path: Path):
        self.path = path

    def load_or_create(self, config: StackConfig) -> ShardMap:
        return ShardMap.load_or_create(self.path, config)

    def load(self) -> ShardMap | None:
        return ShardMap.from_json(self.path.read_text()) if self.path.exists() else None

    def check(self, config: StackConfig) -> ShardMap | None:
        """Raise one line per count the config states differently from the stored map (if any);
        the stored map otherwise."""
        stored = self.load()
        if stored is not None and (problems := stored.disagreements(config, str(self.path))):
            raise ConfigError(problems)
        return stored

    def save(self, shard_map: ShardMap) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(shard_map.to_json())
        tmp.replace(self.path)


class SsmShardMapStore:
    """The AWS store: one SSM parameter per stack (the hosts' instance role may read it)."""

    def __init__(self, stack: str, region: str, client=None):
        import boto3  # only AWS stacks need boto3 here

        self.name = f"/photostack/{stack}/shardmap"
        self.ssm = client or boto3.client("ssm", region_name=region)

    def load_or_create(self, config: StackConfig) -> ShardMap:
        stored = self.load()
        if stored is None:
            shard_map = ShardMap.initial(config)
            self.ssm.put_parameter(Name=self.name, Value=pack_shard_map(shard_map), Type="String", Overwrite=False)
            return shard_map
        if problems := stored.disagreements(config, f"SSM {self.name}"):
            raise ConfigError(problems)
        return stored

    def check(self, config: StackConfig) -> ShardMap | None:
        """Raise one line per count the config states differently from the stored map (if any);
        the stored map otherwise."""
        stored = self.load()
        if stored is not None and (problems := stored.disagreements(config, f"SSM {self.name}")):
            raise ConfigError(problems)
        return stored

    def load(self) -> ShardMap | None:
        try:
            value = self.ssm.get_parameter(Name=self.name)["Parameter"]["Value"]
        except self.ssm.exceptions.ParameterNotFound:
            return None
        return ShardMap.from_json(gzip.decompress(base64.b64decode(value)).decode())

    def save(self, shard_map: ShardMap) -> None:
        self.ssm.put_parameter(Name=self.name, Value=pack_shard_map(shard_map), Type="String", Overwrite=True)


def pack_shard_map(shard_map: ShardMap) -> str:
    """The shard map as its SSM parameter value (gzip+base64 of its JSON)."""
    return base64.b64encode(gzip.compress(shard_map.to_json().encode(), mtime=0)).decode()


def shard_map_store(config: StackConfig, stack: str) -> ShardMapStore:
    """The store of `stack`'s shard map."""
    if config.target == "onebox":
        return FileShardMapStore(state_dir(stack) / SHARDMAP_FILE)
    return SsmShardMapStore(stack, config.region)


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
