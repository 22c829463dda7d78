"""Shard failover under write load on the one-box: write outage and lost acknowledged writes.

    python bench/failover.py [--shard 0]

Kills the shard primary's postmaster (SIGKILL) while one client writes as fast as it can
through pgbouncer, runs the failover runbook (`ops failover`), counts the acknowledged writes
missing afterwards, then rebuilds the old primary as the synchronous standby (`ops
rebuild-replica`). The promoted replica stays primary. Goal: outage ≤ 15 s, 0 lost.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ops.stack import Stack  # noqa: E402
from tests.drills.failover_drill import run_failover_drill  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shard", type=int, default=0)
    args = parser.parse_args()
    stack = Stack.load("onebox")
    stack.prepare()
    r = run_failover_drill(stack, args.shard)
    print(f"failover {r.old} → {r.new} (shard {args.shard})")
    print(f"  write outage:            {r.outage_s:.2f} s   (goal ≤ 15 s)")
    print(f"  lost acknowledged writes: {r.lost} of {r.acked}   (goal 0; {r.acked_before_kill} acked before the kill)")
    print(f"  failed writes (retried):  {r.write_errors}")
    print(f"  ops failover:             {r.failover_s:.2f} s;  ops rebuild-replica: {r.rebuild_s:.2f} s")


if __name__ == "__main__":
    main()
