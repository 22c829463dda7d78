"""Logical shards, physical shards and Instagram's 64-bit ids.

Thousands of logical shards (Postgres schemas `shard_0000` …) live on far fewer physical shards
(primary clusters). Which physical shard holds a logical shard is one stored map
(`shardmap.json`), written once from the stack config and then only edited by moves: moving a
logical shard changes one entry and never re-buckets data, because users hash to *logical*
shards, whose count never changes.

Id layout (Instagram, "Sharding & IDs at Instagram", 2012):
    41 bits milliseconds since a custom epoch | 13 bits logical shard | 10 bits sequence mod 1024
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from infra.atomic_file import write_atomic
from infra.config import SHARD_ID_BITS, ConfigError, StackConfig

SEQUENCE_BITS = 10
SHARDMAP_FILE = "shardmap.json"


def schema_name(logical: int) -> str:
    """The Postgres schema of a logical shard."""
    return f"shard_{logical:04d}"


def physical_db(physical: int, replica: bool = False) -> str:
    """The pgbouncer database name of a physical shard's primary (or its read replica)."""
    return f"shard{physical}_ro" if replica else f"shard{physical}"


@dataclass(frozen=True)
class ShardMap:
    """Logical shard → physical shard, as stored."""

    placement: tuple[int, ...]  # index = logical shard, value = physical shard
    physical_shards: int
    # Raised by every change (a move's flip, an added or removed physical shard): hosts and
    # `ops status` tell which map they hold, and a stale copy is visible.
    version: int = 0

    @classmethod
    def initial(cls, config: StackConfig) -> ShardMap:
        """Contiguous ranges of logical shards per physical shard, as even as the counts allow
        (only used when no map is stored)."""
        pg = config.postgres
        return cls(tuple(i * pg.physical_shards // pg.logical_shards for i in range(pg.logical_shards)),
                   pg.physical_shards)

    @property
    def logical_shards(self) -> int:
        return len(self.placement)

    def physical_of(self, logical: int) -> int:
        return self.placement[logical]

    def logical_on(self, physical: int) -> list[int]:
        return [i for i, p in enumerate(self.placement) if p == physical]

    def moved(self, logical: int, physical: int) -> ShardMap:
        """The map after moving one logical shard (the data move itself is the runbook's job)."""
        if not 0 <= physical < self.physical_shards:
            raise ValueError(f"physical shard {physical} does not exist (0..{self.physical_shards - 1})")
        placement = list(self.placement)
        placement[logical] = physical
        return ShardMap(tuple(placement), self.physical_shards, self.version + 1)

    def grown(self) -> ShardMap:
        """The map with one more physical shard, which holds no logical shard yet."""
        return ShardMap(self.placement, self.physical_shards + 1, self.version + 1)

    def shrunk(self) -> ShardMap:
        """The map without its last physical shard, which must hold no logical shard any more."""
        last = self.physical_shards - 1
        if held := self.logical_on(last):
            raise ValueError(f"physical shard {last} still holds {len(held)} logical shards "
                             f"({ranges(held)}); move them off first")
        if last == 0:
            raise ValueError("physical shard 0 is the last one; a stack keeps at least one")
        return ShardMap(self.placement, last, self.version + 1)

    def rebalanced(self) -> list[tuple[int, int]]:
        """(logical, target physical) moves that leave every physical shard within one logical
        shard of the others, moving the fewest: from the fullest shard its highest-numbered
        logical shards go to the emptiest shard, one at a time."""
        counts = {p: len(self.logical_on(p)) for p in range(self.physical_shards)}
        held = {p: self.logical_on(p) for p in range(self.physical_shards)}
        moves = []
        while True:
            fullest = max(counts, key=lambda p: (counts[p], -p))
            emptiest = min(counts, key=lambda p: (counts[p], p))
            if counts[fullest] - counts[emptiest] <= 1:
                return moves
            logical = held[fullest].pop()
            moves.append((logical, emptiest))
            counts[fullest] -= 1
            counts[emptiest] += 1

    def disagreements(self, config: StackConfig, where: str) -> list[str]:
        """One line per count the stack config states differently from this stored map (`where`
        names the store). The stored map owns both counts: logical shards never change, and
        physical shards change only by moving logical shards, never by editing the config."""
        problems = []
        if self.logical_shards != config.postgres.logical_shards:
            problems.append(f"photostack:postgres.logicalShards: the stored shard map ({where}) has "
                            f"{self.logical_shards} logical shards but the config says "
                            f"{config.postgres.logical_shards}; the logical shard count can never change")
        if self.physical_shards != config.postgres.physical_shards:
            problems.append(f"photostack:postgres.physicalShards: the stored shard map ({where}) has "
                            f"{self.physical_shards} physical shards but the config says "
                            f"{config.postgres.physical_shards}; "
                            + ("run `ops shard add` to add it" if config.postgres.physical_shards == self.physical_shards + 1
                               else "run `ops shard remove` to remove the last one (once it is empty)"
                               if config.postgres.physical_shards == self.physical_shards - 1
                               else "physical shards are added or removed one at a time (`ops shard add`/`remove`)"))
        return problems

    def to_json(self) -> str:
        return json.dumps(
            {"logical_shards": self.logical_shards, "physical_shards": self.physical_shards, "version": self.version,
             "placement": list(self.placement)}
        )

    @classmethod
    def from_json(cls, text: str) -> ShardMap:
        data = json.loads(text)
        placement = tuple(int(p) for p in data["placement"])
        if len(placement) != data["logical_shards"]:
            raise ValueError("shard map is corrupt: placement length differs from logical_shards")
        physical = int(data["physical_shards"])
        if any(not 0 <= p < physical for p in placement):
            raise ValueError(f"shard map is corrupt: a logical shard is placed outside 0..{physical - 1}")
        return cls(placement, physical, int(data.get("version", 0)))  # maps stored before versions: 0

    @classmethod
    def load_or_create(cls, path: Path, config: StackConfig) -> ShardMap:
        """The stored map at `path`; the initial one is stored there first if none exists."""
        if path.exists():
            stored = cls.from_json(path.read_text())
            if problems := stored.disagreements(config, str(path)):
                raise ConfigError(problems)
            return stored
        shard_map = cls.initial(config)
        write_atomic(path, shard_map.to_json())
        return shard_map


def ranges(logical: list[int]) -> str:
    """Logical shard numbers as compact ranges: [0, 1, 2, 5] → "0-2, 5"."""
    parts: list[tuple[int, int]] = []
    for n in sorted(logical):
        if parts and parts[-1][1] == n - 1:
            parts[-1] = (parts[-1][0], n)
        else:
            parts.append((n, n))
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in parts)


def next_id_sql(schema: str, logical: int, epoch_ms: int) -> str:
    """PL/pgSQL creating `<schema>.next_id()` and its sequence (idempotent)."""
    return f"""
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE SEQUENCE IF NOT EXISTS {schema}.table_id_seq;
CREATE OR REPLACE FUNCTION {schema}.next_id(OUT result bigint) AS $$
DECLARE
    our_epoch bigint := {epoch_ms};
    seq_id bigint;
    now_millis bigint;
    shard_id int := {logical};
BEGIN
    SELECT nextval('{schema}.table_id_seq') % {1 << SEQUENCE_BITS} INTO seq_id;
    SELECT FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) INTO now_millis;
    result := (now_millis - our_epoch) << {SHARD_ID_BITS + SEQUENCE_BITS};
    result := result | (shard_id << {SEQUENCE_BITS});
    result := result | (seq_id);
END;
$$ LANGUAGE PLPGSQL;
"""


@dataclass(frozen=True)
class DecodedId:
    """The parts of a 64-bit id."""

    created_at: datetime
    logical_shard: int
    sequence: int


def decode_id(object_id: int, epoch_ms: int) -> DecodedId:
    """Split a 64-bit id into its creation time, logical shard and sequence."""
    millis = (object_id >> (SHARD_ID_BITS + SEQUENCE_BITS)) + epoch_ms
    shard = (object_id >> SEQUENCE_BITS) & ((1 << SHARD_ID_BITS) - 1)
    sequence = object_id & ((1 << SEQUENCE_BITS) - 1)
    return DecodedId(datetime.fromtimestamp(millis / 1000, tz=timezone.utc), shard, sequence)
