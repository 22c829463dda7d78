"""Drill: rolling deploy under load (0 failed GETs), then `ops rollback` and back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infra.records import record
from ops import rollout
from roles.app import release as rel
from roles.app import runtime
from tests.drills.deploy_drill import deploy_under_load

pytestmark = pytest.mark.onebox


def test_rolling_deploy_under_load_fails_no_request(converged):
    run = deploy_under_load(converged)
    print(f"\ndeploy {run.log.version}: {run.log.seconds:.1f}s; {run.load.describe()}")
    assert run.load.total > 500 and run.load.failed == 0, run.load.describe()
    assert run.log.version == rel.build_release().version
    assert [name for name, _ in run.log.steps][2:5] == [f"{b} → {run.log.version}" for b in ("app-0", "app-1", "worker-0")]
    assert record(converged.config, converged.name, "drained").load() == []  # every node back in rotation


def test_rollback_returns_to_the_previous_release_and_a_deploy_unpins(converged):
    stack = converged
    current = rel.build_release().version
    store = record(stack.config, stack.name, runtime.RELEASE_RECORD)
    releases = sorted((p for p in Path(rel.RELEASES).iterdir()
                       if p.name != current and (p / ".release").exists()), key=lambda p: p.stat().st_mtime)
    if not releases:
        pytest.skip("no earlier release on the one-box to roll back to")
    store.save({"version": current, "previous": releases[-1].name, "pinned": False})
    back = rollout.rollback(stack)
    try:
        assert back.version == releases[-1].name
        assert os.path.realpath(rel.CURRENT) == str(releases[-1])
        assert store.load() == {"version": releases[-1].name, "previous": current, "pinned": True}
    finally:
        again = rollout.deploy(stack)  # the working tree again, unpinned: converge follows the tree
    assert again.version == current and store.load()["pinned"] is False
