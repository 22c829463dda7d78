"""Where the one stored shard map lives, per target.

The app, the pgbouncer config and the runbooks all read this one map; the converge renders it
to every host that talks to the shards as `HOST_SHARDMAP_PATH` (the app reads
`PHOTOSTACK_SHARDMAP=/etc/photostack/shardmap.json`). It is created from the stack config once
and afterwards changed only by moves, so a moved logical shard stays moved.

One-box: `<state dir>/shardmap.json`. AWS: the SSM parameter `/photostack/<stack>/shardmap`,
gzip+base64 of the same JSON (6144 placements are ~18 KB of JSON, over SSM's 4 KB standard tier;
gzipped they are a few hundred bytes).
"""

from __future__ import annotations

import base64
import gzip
from pathlib import Path
from typing import Protocol

from infra.config import StackConfig
from infra.sharding import SHARDMAP_FILE, ShardMap
from infra.state import state_dir

HOST_SHARDMAP_PATH = "/etc/photostack/shardmap.json"


class ShardMapStore(Protocol):
    """The stored map of one stack."""

    def load_or_create(self, config: StackConfig) -> ShardMap:
        """The stored map; the initial one from `config` is stored first if none exists."""
        ...

    def save(self, shard_map: ShardMap) -> None:
        """Store a changed map (after a move)."""
        ...


class FileShardMapStore:
    """The one-box store: a JSON file in the state dir."""

    def __init__(self, path: Path):
        self.path = path

    def load_or_create(self, config: StackConfig) -> ShardMap:
        return ShardMap.load_or_create(self.path, config)

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
        try:
            value = self.ssm.get_parameter(Name=self.name)["Parameter"]["Value"]
        except self.ssm.exceptions.ParameterNotFound:
            shard_map = ShardMap.initial(config)
            self.ssm.put_parameter(Name=self.name, Value=_pack(shard_map), Type="String", Overwrite=False)
            return shard_map
        stored = ShardMap.from_json(gzip.decompress(base64.b64decode(value)).decode())
        if stored.logical_shards != config.postgres.logical_shards:
            raise ValueError(
                f"{self.name}: stored map has {stored.logical_shards} logical shards but the config "
                f"says {config.postgres.logical_shards}; the logical shard count can never change"
            )
        return stored

    def save(self, shard_map: ShardMap) -> None:
        self.ssm.put_parameter(Name=self.name, Value=_pack(shard_map), Type="String", Overwrite=True)


def _pack(shard_map: ShardMap) -> str:
    return base64.b64encode(gzip.compress(shard_map.to_json().encode(), mtime=0)).decode()


def shard_map_store(config: StackConfig, stack: str) -> ShardMapStore:
    """The store of `stack`'s shard map."""
    if config.target == "onebox":
        return FileShardMapStore(state_dir(stack) / SHARDMAP_FILE)
    return SsmShardMapStore(stack, config.region)


def stored_shard_map(config: StackConfig, stack: str) -> ShardMap:
    """The stack's stored shard map (created from the config on first use)."""
    return shard_map_store(config, stack).load_or_create(config)
