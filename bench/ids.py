"""Id generation speed: next_id() per physical shard, and duplicates among everything generated.

Prints figures; it is not a test. Needs the one-box up (`make up`). Goals: >= 50,000 ids/s per
physical shard, 0 duplicates.

- batch: 4 connections per physical shard, each calling next_id() of its own logical shard in
  batches (`SELECT shard_NNNN.next_id() FROM generate_series(1, 10000)`) for SECONDS: the
  function's own speed, as a bulk import would use it.
- per row: 8 clients through pgbouncer, one `INSERT … RETURNING id` round trip per id (the id
  as a column default), as the app uses it.
Every id of every run is kept and checked for duplicates at the end.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench.lib.primaries import primary_port  # noqa: E402
from infra.shardstore import stored_shard_map  # noqa: E402
from infra.sharding import physical_db, schema_name  # noqa: E402
from ops.stack import Stack  # noqa: E402

SECONDS = 5.0
BATCH = 10_000


def connect(stack: Stack, port: int, dbname: str) -> psycopg.Connection:
    box = stack.config.onebox
    return psycopg.connect(
        host=box.address, port=port, dbname=dbname, user="photostack", password=stack.secret("dbPassword"),
        autocommit=True, prepare_threshold=None,
    )


def run_clients(clients: int, work) -> tuple[list[int], float]:
    """Run `work(index, deadline, out)` in `clients` threads for SECONDS; all ids and elapsed time."""
    results: list[list[int]] = [[] for _ in range(clients)]
    started = time.monotonic()
    deadline = started + SECONDS
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(work, i, deadline, results[i]) for i in range(clients)]:
            future.result()
    return [i for batch in results for i in batch], time.monotonic() - started


def main() -> None:
    stack = Stack.load("onebox")
    shard_map = stored_shard_map(stack.config, stack.name)
    box = stack.config.onebox
    every_id: list[int] = []
    print(f"next_id() speed, {SECONDS:.0f} s per run, {shard_map.logical_shards} logical shards on "
          f"{shard_map.physical_shards} physical shards")
    for physical in range(shard_map.physical_shards):
        port = primary_port(stack, physical)
        logical = shard_map.logical_on(physical)[:4]

        def batch(i: int, deadline: float, out: list[int]) -> None:
            with connect(stack, port, physical_db(physical)) as conn:
                sql = f"SELECT {schema_name(logical[i])}.next_id() FROM generate_series(1, {BATCH})"
                while time.monotonic() < deadline:
                    out += [row[0] for row in conn.execute(sql)]

        ids, elapsed = run_clients(len(logical), batch)
        every_id += ids
        print(f"  physical shard {physical}, batch:   {len(ids) / elapsed:>10,.0f} ids/s  (goal >= 50,000)")

    def per_row(i: int, deadline: float, out: list[int]) -> None:
        logical = i % shard_map.logical_shards
        table = f"{schema_name(logical)}.bench_ids"
        with connect(stack, box.pgbouncer_port, physical_db(shard_map.physical_of(logical))) as conn:
            while time.monotonic() < deadline:
                out.append(conn.execute(f"INSERT INTO {table} DEFAULT VALUES RETURNING id").fetchone()[0])

    clients = 8
    for logical in range(clients):
        with connect(stack, box.pgbouncer_port, physical_db(shard_map.physical_of(logical))) as conn:
            schema = schema_name(logical)
            conn.execute(f"CREATE UNLOGGED TABLE IF NOT EXISTS {schema}.bench_ids "
                         f"(id bigint PRIMARY KEY DEFAULT {schema}.next_id())")
    try:
        ids, elapsed = run_clients(clients, per_row)
        every_id += ids
        print(f"  all shards, per-row INSERT via pgbouncer ({clients} clients): {len(ids) / elapsed:>8,.0f} ids/s")
    finally:
        for logical in range(clients):
            with connect(stack, box.pgbouncer_port, physical_db(shard_map.physical_of(logical))) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {schema_name(logical)}.bench_ids")
    duplicates = len(every_id) - len(set(every_id))
    print(f"  ids generated: {len(every_id):,}; duplicates: {duplicates}  (goal 0)")


if __name__ == "__main__":
    main()
