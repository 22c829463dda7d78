"""Kill a shard primary under write load, fail over, rebuild: the shared body of the drill
test and bench/failover.py."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ops import failover as fo
from ops.failover import members
from ops.stack import Stack
from tests.drills.faults import wait_for
from tests.drills.writeload import WriteLoad


@dataclass
class FailoverResult:
    old: str
    new: str
    acked: int
    acked_before_kill: int
    lost: int
    outage_s: float
    failover_s: float
    rebuild_s: float
    write_errors: int
    acked_after_failover: int


def kill_postmaster(data_dir: str) -> None:
    """SIGKILL the cluster's postmaster (a crash, not a shutdown)."""
    subprocess.run(["bash", "-c", f"kill -9 $(head -1 {data_dir}/postmaster.pid)"], check=True)


def run_failover_drill(stack: Stack, shard: int = 0, warmup_writes: int = 200,
                       after_failover: Callable[[], None] = lambda: None) -> FailoverResult:
    """Write load → kill the primary → `ops failover` → measure → `after_failover()` →
    `ops rebuild-replica`."""
    found = members(stack, shard)
    old = found[0].cluster
    if not any(m.cluster.in_service for m in found[1:]):
        raise RuntimeError(f"shard {shard} has no replica in service; run `ops rebuild-replica --shard {shard}` first")
    load = WriteLoad(stack, shard)
    load.prepare()
    load.start(uuid.uuid4().hex[:8])
    wait_for(lambda: len(load.acked) >= warmup_writes, 30)  # writes flowing before the kill
    killed_at = time.monotonic()
    kill_postmaster(old.data_dir)
    acked_before = sum(1 for _, t in load.acked if t <= killed_at)
    try:
        log = fo.failover(stack, shard)
        done_at = time.monotonic()
        # Writes flow again: wait (bounded) until some land on the new primary.
        while load.acked_since(done_at) < 100 and time.monotonic() - done_at < 10:
            time.sleep(0.1)
    finally:
        load.stop()
    try:
        new = members(stack, shard)[0].cluster
        lost = load.lost()
        after_failover()
    finally:
        rebuild = fo.rebuild_replica(stack, shard)  # leave the shard with a synchronous standby again
    return FailoverResult(old.name, new.name, len(load.acked), acked_before, len(lost),
                          load.outage_after(killed_at), log.seconds, rebuild.seconds, load.errors, load.acked_since(done_at))
