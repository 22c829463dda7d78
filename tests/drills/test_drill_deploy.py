"""Drill: rolling deploy under load (0 failed GETs), then `ops rollback` and back."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from infra import release_artifact
from infra.records import record
from ops import rollout
from roles.app import release as rel
from roles.app import runtime
from tests.drills.deploy_drill import deploy_under_load
from tests.drills.desired import assert_converged

pytestmark = [pytest.mark.onebox, pytest.mark.drill]


def test_rolling_deploy_under_load_fails_no_request(converged):
    run = deploy_under_load(converged)
    print(f"\ndeploy {run.log.version}: {run.log.seconds:.1f}s; {run.load.describe()}")
    # Requests completed all through the deploy (each batch restarts a node while they run).
    assert run.during >= 3 * 10 and run.load.failed == 0, run.load.describe()
    assert run.log.version == rel.build_release().version
    assert [name for name, _ in run.log.steps][2:5] == [f"{b} → {run.log.version}" for b in ("app-0", "app-1", "worker-0")]
    assert record(converged.config, converged.name, "drained").load() == []  # every node back in rotation


def _another_release(root: Path) -> rel.Release:
    """A release other than the working tree's, built without git history (a CI clone may be
    shallow): the shipped files and the lock its requirements come from in a fresh repo, plus one file."""
    for name in [*release_artifact.release_files(), release_artifact.LOCK_NAME]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(rel.REPO_ROOT / name, root / name)
    (root / "app" / "DRILL").write_text("a release that is not the working tree's\n")
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.email=drill@localhost", "-c", "user.name=drill",
                                                 "commit", "-qm", "another release"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)
    return rel.release_of(root)


def _earlier_releases(current: str) -> list[Path]:
    """Shipped releases other than `current`, oldest first."""
    return sorted((p for p in Path(rel.RELEASES).iterdir() if p.name != current and (p / ".release").exists()),
                  key=lambda p: p.stat().st_mtime)


def test_rollback_returns_to_the_previous_release_and_a_deploy_unpins(converged, tmp_path):
    stack = converged
    current = rel.build_release().version
    store = record(stack.config, stack.name, runtime.RELEASE_RECORD)
    if not _earlier_releases(current):
        # A fresh one-box has only the working tree's release: ship another beside it.
        rollout.ship(stack, [stack.hosts[0]], _another_release(tmp_path))
    releases = _earlier_releases(current)
    store.save({"version": current, "previous": releases[-1].name, "pinned": False})
    back = rollout.rollback(stack)
    try:
        assert back.version == releases[-1].name
        assert os.path.realpath(rel.CURRENT) == str(releases[-1])
        assert store.load() == {"version": releases[-1].name, "previous": current, "pinned": True}
        assert_converged(stack, "`ops rollback`")  # a converge keeps the pinned release
    finally:
        again = rollout.deploy(stack)  # the working tree again, unpinned: converge follows the tree
    assert again.version == current and store.load()["pinned"] is False


class FailsToDrain(rollout.NginxBalancer):
    """nginx, except that taking `node` out of rotation fails once (as a broken reload would)."""

    def __init__(self, stack, node: str):
        super().__init__(stack)
        self.node, self.failed = node, False

    def drain(self, batch: rollout.Batch) -> None:
        if batch.name == self.node and not self.failed:
            self.failed = True
            raise rollout.StepFailed(f"onebox: reload nginx (drain {self.node}) failed (exit 1): drill")
        super().drain(batch)


def test_failing_batch_rolls_back_and_stops_with_one_clear_line(converged):
    stack = converged
    current = rel.build_release().version
    store = record(stack.config, stack.name, runtime.RELEASE_RECORD)
    before = store.load()
    with pytest.raises(rollout.DeployFailed) as failed:
        rollout.deploy(stack, version="HEAD", balancer=FailsToDrain(stack, "app-1"))
    message = str(failed.value)
    assert message.startswith("deploy of ") and "stopped at app-1: onebox: reload nginx (drain app-1) failed" in message
    assert f"rolled back app-1, app-0 to {current}" in message
    assert os.path.realpath(rel.CURRENT) == f"{rel.RELEASES}/{current}"
    for pidfile in ("/run/photostack/app-8001.pid", "/run/photostack/app-8002.pid"):
        pid = Path(pidfile).read_text().split()[0]
        assert os.readlink(f"/proc/{pid}/cwd") == f"{rel.RELEASES}/{current}"
    assert record(stack.config, stack.name, "drained").load() == []
    assert store.load() == before  # a failed deploy records nothing
    assert not (stack.state / rollout.LOCK_FILE).exists()
