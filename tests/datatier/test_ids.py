"""Instagram's 64-bit ids from each logical shard's next_id(), on the real shards."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from infra.sharding import decode_id, physical_db, schema_name

pytestmark = pytest.mark.onebox


def _epoch(datatier) -> int:
    return datatier.stack.config.postgres.id_epoch_ms


def test_ids_decode_to_their_logical_shard_and_now(datatier):
    shard_map = datatier.shard_map
    for logical in (0, 1, shard_map.logical_shards // 2, shard_map.logical_shards - 1):
        with datatier.pgbouncer(physical_db(shard_map.physical_of(logical))) as conn:
            new_id = conn.execute(f"SELECT {schema_name(logical)}.next_id()").fetchone()[0]
        decoded = decode_id(new_id, _epoch(datatier))
        assert decoded.logical_shard == logical
        assert abs((decoded.created_at - datetime.now(timezone.utc)).total_seconds()) <= 1.0


def test_sequential_ids_strictly_increase_within_a_shard(datatier):
    with datatier.pgbouncer("shard0") as conn:
        conn.execute("SELECT setval('shard_0003.table_id_seq', 1)")  # 1000 calls, no wrap
        ids = [conn.execute("SELECT shard_0003.next_id()").fetchone()[0] for _ in range(1000)]
    assert all(a < b for a, b in zip(ids, ids[1:]))


def test_sequence_wraps_at_1024_keeping_ids_unique(datatier):
    """The 10-bit field holds nextval mod 1024: after 1023 comes 0. Ids stay unique as long as a
    logical shard makes at most 1024 ids in one millisecond (the design's stated limit)."""
    with datatier.pgbouncer("shard0") as conn:
        conn.execute("SELECT setval('shard_0004.table_id_seq', 1021)")
        ids = [row[0] for row in conn.execute("SELECT shard_0004.next_id() FROM generate_series(1, 4)")]
    decoded = [decode_id(i, _epoch(datatier)) for i in ids]
    assert [d.sequence for d in decoded] == [1022, 1023, 0, 1]
    assert len(set(ids)) == 4
    assert all(d.logical_shard == 4 for d in decoded)
    assert decoded[2].created_at >= decoded[1].created_at


def test_a_million_concurrent_ids_across_shards_have_no_duplicates(datatier):
    shard_map = datatier.shard_map
    # Two logical shards on each physical shard, generated at the same time: 4 x 250,000.
    logical = [n for p in range(shard_map.physical_shards) for n in shard_map.logical_on(p)[:2]]
    per_shard = 1_000_000 // len(logical)

    def generate(n: int) -> list[int]:
        with datatier.connect(datatier.primary_port(shard_map.physical_of(n)), physical_db(shard_map.physical_of(n))) as conn:
            return [r[0] for r in conn.execute(f"SELECT {schema_name(n)}.next_id() FROM generate_series(1, {per_shard})")]

    with ThreadPoolExecutor(len(logical)) as pool:  # the rate is bench/ids.py's figure
        batches = list(pool.map(generate, logical))
    ids = [i for batch in batches for i in batch]
    assert len(ids) == per_shard * len(logical) >= 1_000_000
    assert len(set(ids)) == len(ids)
    for n, batch in zip(logical, batches):
        assert {decode_id(i, _epoch(datatier)).logical_shard for i in batch[:: per_shard // 10]} == {n}
