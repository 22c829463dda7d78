"""Drill: point-in-time recovery of a shard under write load (pgBackRest), across a failover,
and in place.

1. Under write load, a named restore point T is created on the primary; writes go on; the
   drill's rows are then deleted (the damage). Restored into a side cluster at T: every write
   acknowledged before T was asked for is there, none sent after T returned (writes in flight
   at T are counted apart, they may fall on either side).
2. The shard fails over under load and writes go on; restored to a time after the failover, the
   side cluster holds every write acknowledged before that time: the archive has no gap across
   the timeline switch.
3. In place, to a time: the shard's primary is replaced by the restore, the app answers again,
   every write acknowledged before the time is there, and the replica streams from it again.
"""

from __future__ import annotations

import secrets
import time
import urllib.request
from datetime import UTC, datetime

import pytest

from ops import backups as bk
from ops import failover as fo
from ops.remote import check_converged, run_step
from roles.postgres import commands
from roles.postgres.cluster import Cluster
from tests.drills.desired import assert_converged
from tests.drills.faults import wait_for
from tests.drills.writeload import TABLE, WriteLoad

pytestmark = pytest.mark.onebox

SHARD = 1


def _side_rows(stack, member: fo.Member, name: str, run: str) -> set[int]:
    """The drill's rows of `run` in side cluster `name` (over its socket, as postgres)."""
    port = run_step(member.host, stack.ssh, "side port", f"pg_lsclusters -h | awk '$2 == \"{name}\" {{print $3}}'").strip()
    side = Cluster(member.cluster.version, SHARD, 0, "127.0.0.1", int(port))
    out = run_step(member.host, stack.ssh, "side rows", commands.psql_value(
        side, f"SELECT n FROM {TABLE} WHERE run = '{run}'", member.cluster.database))
    return {int(line) for line in out.split()}


def _drop(stack, member: fo.Member, name: str) -> None:
    run_step(member.host, stack.ssh, f"drop {name}", f"pg_dropcluster --stop {member.cluster.version} {name} || true")


def _load(stack, run: str) -> WriteLoad:
    load = WriteLoad(stack, SHARD, max_seconds=240)
    load.prepare()
    load.start(run)
    wait_for(lambda: len(load.acked) > 200, 30)
    return load


def _wall(moment: float) -> datetime:
    """A monotonic moment of this process as wall-clock time (for a restore target)."""
    return datetime.fromtimestamp(time.time() - (time.monotonic() - moment), UTC)


@pytest.fixture
def archiving(converged):
    """The one-box with this branch's postgres role converged (archiving on, stanzas) and a fresh
    backup of the shard: the shared box may have run without archiving before (a converge of
    an older checkout), and WAL from such a time is not in the archive."""
    _rebuild_waiting(converged)
    check_converged(converged.converge(converged.hosts, {"postgres"}), "postgres with pgBackRest")
    bk.backup(converged, SHARD, "diff")
    yield converged
    _rebuild_waiting(converged)  # a drill stopped between its failover and its rebuild


def _rebuild_waiting(stack) -> None:
    """Put a member that waits for its rebuild (an earlier failover) back in service."""
    if any(not m.cluster.in_service for m in fo.members(stack, SHARD)):
        fo.rebuild_replica(stack, SHARD)


def test_restore_to_a_restore_point_then_across_a_failover_then_in_place(archiving):
    stack = archiving
    tag = secrets.token_hex(3)
    side1, side2 = f"drill_pitr_{tag}", f"drill_failover_{tag}"
    member = bk.primary(stack, SHARD)
    try:
        # 1. restore point T under load, damage, restore into a side cluster
        run1 = f"pitr-{tag}"
        load = _load(stack, run1)
        point = f"drill_{tag}"
        asked = time.monotonic()
        run_step(member.host, stack.ssh, "restore point",
                 commands.psql(member.cluster, f"SELECT pg_create_restore_point('{point}')"))
        returned = time.monotonic()
        wait_for(lambda: sum(1 for _, t in load.acked if t > returned) > 200, 30)
        with load.connect() as conn:
            conn.execute(f"DELETE FROM {TABLE} WHERE run = %s", (run1,))  # the damage
        load.stop()
        bk.restore(stack, SHARD, bk.Target("name", point), side1)
        assert_converged(stack, "`ops restore --into`")
        restored = _side_rows(stack, member, side1, run1)
        before = {n for n, t in load.acked if t < asked}
        after = {n for n, t in load.sent.items() if t > returned}
        in_flight = set(load.sent) - before - after
        print(f"\nrestore point: {len(before)} acked before T, {len(after)} sent after, "
              f"{len(in_flight)} in flight ({len(in_flight & restored)} of them restored)")
        assert len(before) > 100 and len(after) > 100
        assert before - restored == set(), "writes acknowledged before T missing"
        assert after & restored == set(), "writes sent after T restored"

        # 2. fail over under load, write on, restore to a time after the failover
        run2 = f"failover-{tag}"
        load = _load(stack, run2)
        log = fo.failover(stack, SHARD)
        assert not log.warnings, log.warnings
        promoted = time.monotonic()
        wait_for(lambda: sum(1 for _, t in load.acked if t > promoted) > 200, 60)
        load.stop()
        target = max(t for _, t in load.acked)
        time.sleep(1)
        member = bk.primary(stack, SHARD)
        bk.restore(stack, SHARD, bk.Target("time", f"{_wall(target) :%Y-%m-%d %H:%M:%S.%f+00}"), side2)
        acked = {n for n, t in load.acked if t <= target}
        missing = acked - _side_rows(stack, member, side2, run2)
        assert missing == set(), f"{len(missing)} acknowledged writes missing across the failover"
        fo.rebuild_replica(stack, SHARD)
        assert_converged(stack, "`ops failover` then `ops rebuild-replica`")

        # 3. in place, to a time: the app comes back, the replica streams from the restored primary
        run3 = f"inplace-{tag}"
        load = _load(stack, run3)
        wait_for(lambda: len(load.acked) > 500, 30)
        load.stop()
        target = max(t for _, t in load.acked)
        acked = {n for n, _ in load.acked}
        time.sleep(1)
        with load.connect() as conn:
            conn.execute(f"DELETE FROM {TABLE} WHERE run = %s", (run3,))  # the damage
        when = f"{_wall(target):%Y-%m-%d %H:%M:%S.%f+00}"
        bk.restore(stack, SHARD, bk.Target("time", when), None, yes=True)
        assert_converged(stack, "`ops restore --yes` (in place)")
        assert load.lost() == []  # every write acknowledged before the target is back
        load = _load(stack, f"after-{tag}")  # the shard takes writes again
        load.stop()
        box = stack.config.onebox
        with urllib.request.urlopen(f"http://{box.address}:{box.http_port}/health", timeout=10) as answer:
            assert answer.status == 200
        primary, replica = fo.members(stack, SHARD)[:2]
        run_step(primary.host, stack.ssh, "replica streams", commands.wait_streaming(primary.cluster, replica.cluster))
    finally:
        for name in (side1, side2):
            _drop(stack, member, name)


def test_restore_refuses_a_time_beyond_the_archive_and_a_missing_confirmation(archiving):
    stack = archiving
    later = datetime.now(UTC).replace(year=datetime.now(UTC).year + 1)
    with pytest.raises(bk.RestoreRefused, match="after the last archived WAL"):
        bk.restore(stack, SHARD, bk.parse_target(later.isoformat(), False), "drill_never")
    with pytest.raises(bk.RestoreRefused, match="pass --yes"):
        bk.restore(stack, SHARD, bk.Target("latest"), None, yes=False, ask=None)
    member = bk.primary(stack, SHARD)
    out = run_step(member.host, stack.ssh, "clusters", "pg_lsclusters -h")
    assert "drill_never" not in out
