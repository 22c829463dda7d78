"""Backups on the one-box: full backup throughput, restore time of a ≥ 1 GB shard, its restore drill, RPO seen.

    python bench/backup.py [--shard 1] [--gb 1.0] [--rpo-seconds 150]

Grows the shard to at least `--gb` GB (a filler table, dropped at the end), takes a full backup
(`ops backup --type full`: MB/s of database size), restores it into a side cluster (`ops
restore --latest --into …`: seconds, dropped afterwards), runs its restore drill (`ops
restore-drill`: the latest backup and archive into a throwaway cluster, checked), then writes through pgbouncer for
`--rpo-seconds` while sampling how old the oldest write not yet in the archive is (now − the
primary's last_archived_time while WAL waits): the RPO. Goals: RPO ≤ 60 s (archive_timeout),
restore of 1 GB ≤ 2 min on 2 cores. Run it alone (under /tmp/onebox.lock): it loads the box.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ops import backups as bk  # noqa: E402
from ops.remote import run_step  # noqa: E402
from ops.stack import Stack  # noqa: E402
from roles.postgres import commands  # noqa: E402
from tests.drills.writeload import WriteLoad  # noqa: E402

FILLER = "bench_backup.filler"
ROW_BYTES = 250  # roughly, per filler row on disk


def db_bytes(stack: Stack, member) -> int:
    return int(run_step(member.host, stack.ssh, "size", commands.psql_value(
        member.cluster, "SELECT pg_database_size(current_database())", member.cluster.database)).strip())


def grow(stack: Stack, member, gb: float) -> None:
    missing = int(gb * 1e9) - db_bytes(stack, member)
    if missing <= 0:
        return
    rows = missing // ROW_BYTES + 1
    run_step(member.host, stack.ssh, "filler", commands.psql(member.cluster, (
        "CREATE SCHEMA IF NOT EXISTS bench_backup;\n"
        f"CREATE TABLE IF NOT EXISTS {FILLER} (n bigint, pad text);\n"
        f"INSERT INTO {FILLER} SELECT g, md5(g::text) || repeat(md5((g * 7)::text), 6) FROM generate_series(1, {rows}) g;\n"
    ), member.cluster.database))


def rpo(stack: Stack, shard: int, seconds: float) -> float:
    """The largest age, over `seconds` of writing, of WAL written but not archived yet."""
    member = bk.primary(stack, shard)
    load = WriteLoad(stack, shard, max_seconds=seconds + 10)
    load.prepare()
    load.start(f"rpo-{secrets.token_hex(3)}")
    query = commands.psql_value(member.cluster, "SELECT extract(epoch FROM now() - last_archived_time) FROM pg_stat_archiver")
    worst = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        worst = max(worst, float(run_step(member.host, stack.ssh, "archiver", query).strip() or 0))
        time.sleep(1)
    load.stop()
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shard", type=int, default=1)
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--rpo-seconds", type=float, default=150)
    args = parser.parse_args()
    stack = Stack.load("onebox")
    stack.prepare()
    member = bk.primary(stack, args.shard)
    side = f"bench_restore_{secrets.token_hex(3)}"
    try:
        grow(stack, member, args.gb)
        size = db_bytes(stack, member)
        started = time.monotonic()
        bk.backup(stack, args.shard, "full")
        backup_s = time.monotonic() - started
        newest = bk.shard_status(stack, args.shard).newest
        started = time.monotonic()
        bk.restore(stack, args.shard, bk.Target("latest"), side)
        restore_s = time.monotonic() - started
        started = time.monotonic()
        _, drilled = bk.drill(stack, args.shard)
        drill_s = time.monotonic() - started
        worst = rpo(stack, args.shard, args.rpo_seconds)
    finally:
        run_step(member.host, stack.ssh, "drop side", f"pg_dropcluster --stop {member.cluster.version} {side} || true")
        run_step(member.host, stack.ssh, "drop filler", commands.psql(
            member.cluster, "DROP SCHEMA IF EXISTS bench_backup CASCADE;", member.cluster.database))
    print(f"shard {args.shard}: {size / 1e9:.2f} GB database, at {datetime.now(UTC):%Y-%m-%d %H:%M}Z")
    print(f"  full backup:   {backup_s:6.1f} s  = {size / 1e6 / backup_s:6.1f} MB/s "
          f"(stored {newest.repo_size / 1e6:.0f} MB, lz4)")
    print(f"  restore:       {restore_s:6.1f} s   (side cluster, --latest; goal ≤ 120 s for 1 GB)")
    print(f"  restore drill: {drill_s:6.1f} s   ({drilled})")
    print(f"  RPO seen:      {worst:6.1f} s   (writes not yet archived, worst of {args.rpo_seconds:.0f} s; goal ≤ 60 s)")


if __name__ == "__main__":
    main()
