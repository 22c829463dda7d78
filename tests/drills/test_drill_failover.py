"""Drill: kill a shard primary under write load → failover; no acknowledged write lost."""

from __future__ import annotations

import pytest

from tests.drills.failover_drill import run_failover_drill

pytestmark = pytest.mark.onebox


def test_kill_shard_primary_under_write_load_loses_no_acknowledged_write(converged):
    result = run_failover_drill(converged, shard=0)
    print(f"\nfailover {result.old} → {result.new}: outage {result.outage_s:.2f}s, "
          f"{result.acked} acked ({result.acked_before_kill} before the kill), lost {result.lost}, "
          f"failover {result.failover_s:.2f}s, rebuild {result.rebuild_s:.2f}s")
    assert result.new != result.old
    assert result.acked_before_kill > 100  # the load really ran
    assert result.acked_after_failover >= 100  # writes resumed on the new primary
    assert result.lost == 0
    assert result.outage_s < 15
