"""A rolling deploy across the lab's two app hosts under users' reads through its load balancer
(root, under the lab lock): `ops --stack lab deploy --version REV` from the operator's machine, as
on EC2 (inventory from EC2 tags, SSH through the bastion, nginx's upstream drained node by node),
of a release other than the one the hosts booted."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from infra.config import REPO_ROOT
from infra.role_settings import declared
from roles.app import release as rel
from tests.lab_stack.conftest import operator_environment, ops
from tests.lab_stack.drills import Placement, in_host
from tests.lab_stack.fleetload import READS, FleetLoad, LoadReport, sign_up

pytestmark = pytest.mark.lab
USERS = 2  # one on each shard
# The load's bounds: a deploy of the lab's three nodes takes well under a minute here.
LOAD_MAX_S = 180.0
LOAD_MAX_REQUESTS = 6_000
DEPLOY_TIMEOUT_S = 300
MARKER = "app/LAB_DEPLOY"  # the one file the new release adds: its version differs from the booted one
DEPLOYED = re.compile(r"^deployed (\S+) \(was (.*)\) in ", re.M)


def another_revision(repo: Path = REPO_ROOT) -> str:
    """A commit of HEAD's tree plus MARKER, made with git's plumbing: no branch, index or file of
    the checkout changes (`git worktree add` of a bare commit id needs no ref; a shallow clone works)."""
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(scratch) / "index"), "GIT_AUTHOR_NAME": "lab deploy test",
               "GIT_AUTHOR_EMAIL": "lab@localhost", "GIT_COMMITTER_NAME": "lab deploy test",
               "GIT_COMMITTER_EMAIL": "lab@localhost"}

        def git(*args: str, text: str | None = None) -> str:
            return subprocess.run(["git", "-C", str(repo), *args], input=text, env=env, capture_output=True,
                                  text=True, check=True).stdout.strip()

        git("read-tree", "HEAD")
        blob = git("hash-object", "-w", "--stdin", text=f"a release the lab did not boot: {uuid.uuid4().hex}\n")
        git("update-index", "--add", "--cacheinfo", f"100644,{blob},{MARKER}")
        return git("commit-tree", git("write-tree"), "-p", "HEAD", "-m", "lab deploy test: another release")


def served_releases(node: str) -> set[str]:
    """The release dirs the app servers on `node` (each gunicorn and its workers) run from."""
    run_dir = declared("app")["app_run_dir"]
    done = in_host(node, f"for f in {run_dir}/app-*.pid; do p=$(cat $f); "
                         "for q in $p $(cat /proc/$p/task/*/children); do readlink /proc/$q/cwd; done; done")
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_a_rolling_deploy_under_reads_fails_none_and_every_app_host_serves_the_new_release(
        lab_green, lab_client, tmp_path):
    env = operator_environment(tmp_path)
    apps = [i.node for i in lab_green.plan.instances if i.role == "app"]
    assert len(apps) == 2, apps
    booted = {node: served_releases(node) for node in apps}
    placement = Placement.stored()
    users = sign_up(lab_client, USERS, placement.of_user, placement.shard_map.physical_shards)
    revision = another_revision()
    load = FleetLoad(users, max_seconds=LOAD_MAX_S, max_requests=LOAD_MAX_REQUESTS, mix=READS).start()
    try:
        load.wait_for(20)
        started = time.monotonic()
        deployed = ops("deploy", "--version", revision, env=env, timeout=DEPLOY_TIMEOUT_S)
        ended = time.monotonic()
        load.wait_for(20)
        report = load.stop()
        served = {node: served_releases(node) for node in apps}
    finally:
        load.stop()
        # The booted release again, unpinned: converges, and hosts that boot from the release bundle
        # (a replaced one), follow the bundle's release, not this test's.
        back = ops("deploy", env=env, timeout=DEPLOY_TIMEOUT_S)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    during = report.between(started, ended)
    print(f"\n{DEPLOYED.search(deployed.stdout).group(0)}{ended - started:.1f} s (the command); "
          f"reads during it: {report.describe(during)}; all: {report.describe()}")
    assert len(during) >= 20, report.describe(during)  # the load ran all through the deploy
    assert LoadReport.failed(report.samples) == [], report.describe()
    version, was = DEPLOYED.search(deployed.stdout).groups()
    assert version not in was and all(f"{rel.RELEASES}/{version}" not in dirs for dirs in booted.values()), (version, booted)
    for node in apps:
        assert served[node] == {f"{rel.RELEASES}/{version}"}, (node, served[node])
        assert in_host(node, f"test -f {rel.RELEASES}/{version}/{MARKER}").returncode == 0, node
    assert back.returncode == 0, back.stdout + back.stderr
