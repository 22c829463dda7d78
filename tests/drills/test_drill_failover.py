"""Drill: kill a shard primary under write load → failover; no acknowledged write lost."""

from __future__ import annotations

import pytest

from ops.failover import Member, StepLog, members, most_advanced
from ops.remote import run_step
from roles.postgres import commands
from tests.drills.failover_drill import run_failover_drill
from tests.drills.desired import assert_converged
from tests.drills.faults import wait_for

pytestmark = [pytest.mark.onebox, pytest.mark.drill]


def test_kill_shard_primary_under_write_load_loses_no_acknowledged_write(converged):
    # After the failover only the fenced member's rebuild is left (`rebuild-replica`'s step, or
    # the next converge's); after the rebuild nothing is.
    result = run_failover_drill(converged, shard=0, after_failover=lambda: assert_converged(
        converged, "`ops failover`", but=frozenset({"postgres"})))
    assert_converged(converged, "`ops failover` then `ops rebuild-replica`")
    print(f"\nfailover {result.old} → {result.new}: outage {result.outage_s:.2f}s, "
          f"{result.acked} acked ({result.acked_before_kill} before the kill), lost {result.lost}, "
          f"failover {result.failover_s:.2f}s, rebuild {result.rebuild_s:.2f}s")
    assert result.new != result.old  # writes were flowing before the kill (the drill waits for 200)
    assert result.acked_after_failover >= 100  # writes resumed on the new primary
    assert result.lost == 0  # how long they stopped is bench/failover.py's figure, not a test's


def _received(stack, member: Member) -> int:
    return int(run_step(member.host, stack.ssh, "received", commands.received_wal(member.cluster)).strip())


def test_failover_promotes_the_replica_that_received_the_most_wal(converged):
    """Commits wait for ANY 1 standby, so with several replicas only the most advanced one surely
    holds every acknowledged write. Asked for real, the choice follows the WAL each replica has
    received, whatever order they are listed in. (The one-box has one replica per shard: the
    replicas of two shards stand in for two replicas of one.)"""
    stack = converged
    behind, ahead = sorted((members(stack, shard)[1] for shard in (0, 1)), key=lambda m: _received(stack, m))
    primary = members(stack, ahead.cluster.shard)[0]
    # 4 MB of WAL on `ahead`'s shard, so that the gap does not depend on earlier tests.
    run_step(primary.host, stack.ssh, "write WAL",
             commands.psql(primary.cluster, "SELECT pg_logical_emit_message(true, 'drill', repeat('x', 4000000))"))
    wait_for(lambda: _received(stack, ahead) > _received(stack, behind) + 4_000_000, 30)
    log = StepLog()
    assert most_advanced(stack, [behind, ahead], log) == ahead
    assert most_advanced(stack, [ahead, behind], log) == ahead
    assert not log.warnings
