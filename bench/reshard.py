"""Moving logical shards by logical replication: copy throughput, write pause, total time.

    python bench/reshard.py [--gb 1.0] [--logical 16] [--writers 4]

Two throwaway PostgreSQL 15 clusters on this machine (tests/datatier/pgpair.py): a source
physical shard of `--logical` logical shards holding `--gb` GB of photos in all, and an empty
target. With `--writers` threads inserting into every logical shard all along, each logical
shard moves in turn by the SQL of ops/reshard_sql.py (copy, freeze, caught up by rows and
checksums, sequence advanced, clean). Prints the copy throughput (MB/s), the write pause per
logical shard (freeze → sequence advanced; p50/p99/max; goal ≤ 2 s) and the total time to move
the whole physical shard. On a real stack `ops shard move` adds the map's write to every host
to each pause (one file, over SSH in parallel): the one-box drill prints that end-to-end pause.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from tests.datatier.pgpair import start_pair  # noqa: E402

ROW_BYTES = 1000  # a photo row with a ~900-byte caption, with its index entries


class Writers:
    """Threads inserting a photo into each logical shard in turn; acknowledged ids kept."""

    def __init__(self, dsn: str, logical: list[int], count: int):
        self.dsn, self.logical, self.stop = dsn, logical, threading.Event()
        self.acked: dict[int, list[int]] = {n: [] for n in logical}
        self.refused = 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)]

    def _run(self, offset: int) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            i = offset
            while not self.stop.is_set():
                n = self.logical[i % len(self.logical)]
                i += 1
                try:
                    (photo,) = conn.execute(f"INSERT INTO shard_{n:04d}.photos (user_id, image_key, width, height) "
                                            "VALUES (1, 'w', 1, 1) RETURNING id").fetchone()
                    self.acked[n].append(photo)
                except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedTable):
                    self.refused += 1  # frozen, or moved (the bench has no map: the writer keeps the source)
                time.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="data on the source physical shard")
    parser.add_argument("--logical", type=int, default=16, help="logical shards on it")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--trace", action="store_true", help="print each cut-over step's time")
    args = parser.parse_args()
    pair = start_pair({"shared_buffers": "256MB", "max_wal_size": "4GB", 
                        # as roles/postgres/templates/postgresql.conf.j2 sets them
                        "wal_retrieve_retry_interval": "200ms", "max_sync_workers_per_subscription": "3"})
    try:
        logical = list(range(args.logical))
        rows = int(args.gb * 1e9 / ROW_BYTES / args.logical)
        started = time.monotonic()
        for n in logical:
            pair.create_logical(n)
            pair.psql(pair.source, f"INSERT INTO shard_{n:04d}.photos (user_id, image_key, caption, width, height) "
                                   f"SELECT i, 'k' || i, repeat('x', 900), 1, 1 FROM generate_series(1, {rows}) i")
        size = int(pair.value(pair.source, "SELECT pg_database_size(current_database())"))
        print(f"source: {args.logical} logical shards, {size / 1e9:.2f} GB (loaded in {time.monotonic() - started:.0f} s)")

        writers = Writers(pair.dsn(pair.source), logical, args.writers)
        for thread in writers.threads:
            thread.start()
        copied_bytes, copy_s, pauses = 0, 0.0, []
        started = time.monotonic()
        for n in logical:
            schema_bytes = int(pair.value(pair.source, f"SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                                                       f"JOIN pg_namespace s ON s.oid = c.relnamespace "
                                                       f"WHERE s.nspname = 'shard_{n:04d}' AND c.relkind = 'r'"))
            t = time.monotonic()
            pair.copy(n)
            copy_s += time.monotonic() - t
            copied_bytes += schema_bytes
            t = time.monotonic()
            pair.cut_over(n, trace=args.trace)
            pauses.append(time.monotonic() - t)
            pair.clean(n)
        total_s = time.monotonic() - started
        writers.stop.set()
        for thread in writers.threads:
            thread.join()

        with psycopg.connect(pair.dsn(pair.target), autocommit=True) as conn:
            lost = sum(len(set(ids) - {r[0] for r in conn.execute(f"SELECT id FROM shard_{n:04d}.photos")})
                       for n, ids in writers.acked.items())
        pauses.sort()
        p99 = pauses[min(len(pauses) - 1, int(round(0.99 * (len(pauses) - 1))))]
        print(f"copy throughput:        {copied_bytes / 1e6 / copy_s:.1f} MB/s ({copied_bytes / 1e6:.0f} MB in {copy_s:.1f} s)")
        print(f"write pause per shard:  p50 {statistics.median(pauses):.2f} s, p99 {p99:.2f} s, max {pauses[-1]:.2f} s"
              f"   (goal ≤ 2 s; {len(pauses)} logical shards)")
        print(f"total, whole shard:     {total_s:.1f} s for {size / 1e9:.2f} GB")
        print(f"writes during moves:    {sum(map(len, writers.acked.values()))} acknowledged, {lost} lost, "
              f"{writers.refused} refused (frozen or already moved)")
    finally:
        pair.stop()


if __name__ == "__main__":
    main()
