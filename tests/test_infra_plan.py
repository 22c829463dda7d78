"""The offline plan: a reviewed snapshot of prod, secrets masked, and `ops plan` on good and bad stacks.

Run with UPDATE_SNAPSHOTS=1 to rewrite the snapshot after an intended topology change.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from infra.config import REPO_ROOT
from infra.plan_render import render_plan
from ops.plan_cli import register
from tests._infra_plans import plan_of

SNAPSHOT = Path(__file__).parent / "snapshots" / "prod_plan.txt"


def test_prod_plan_matches_the_reviewed_snapshot():
    rendered = render_plan(plan_of("prod"))
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(rendered)
        pytest.skip(f"rewrote {SNAPSHOT.name}: review the diff; the next run compares against it")
    assert rendered == SNAPSHOT.read_text(), "prod topology changed: review, then UPDATE_SNAPSHOTS=1 pytest"


def test_plan_shows_secrets_masked_and_counts_per_type():
    rendered = render_plan(plan_of("prod"))
    assert "name=/photostack/prod/dbPassword type=SecureString value=[secret]" in rendered
    assert "token=[secret]" in rendered and "PLAN-SECRET" not in rendered
    assert "    69  aws:ec2/instance:Instance" in rendered
    total = int(rendered.rstrip().splitlines()[-1].split()[0])
    assert total == len(plan_of("prod").resources) >= 300


def _app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return app


def test_ops_plan_prints_the_plan_and_the_policy_verdict():
    result = CliRunner().invoke(_app(), ["plan", "--stack", "staging"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("photostack staging: offline plan")
    assert "Policies: 12 checked, no violations." in result.stdout


def test_ops_plan_of_onebox_says_there_is_nothing_to_plan():
    result = CliRunner().invoke(_app(), ["plan", "--stack", "onebox"])
    assert result.exit_code == 0
    assert "targets onebox: no cloud resources to plan" in result.stdout


def test_ops_plan_of_a_bad_stack_fails_with_one_line():
    result = CliRunner().invoke(_app(), ["plan", "--stack", "nope"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"Pulumi.nope.yaml: stack 'nope' has no config file at {REPO_ROOT / 'Pulumi.nope.yaml'}"]


def test_prod_plan_has_the_backup_bucket_and_the_snapshot_policy():
    rendered = render_plan(plan_of("prod"))
    assert "aws:s3/bucket:Bucket backups-bucket bucket=photostack-example-com-prod-pg-backups" in rendered
    assert "aws:s3/bucketVersioning:BucketVersioning backups-bucket versioningConfiguration.status=Enabled" in rendered
    assert "sseAlgorithm=aws:kms" in rendered
    assert "aws:dlm/lifecyclePolicy:LifecyclePolicy backups-snapshots state=ENABLED" in rendered


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare (a network namespace)")
def test_ops_plan_of_prod_runs_with_no_network_at_all(tmp_path):
    """Offline for real: in a network namespace of its own (not even loopback up), so any call out
    (a provider's, an AWS lookup's) would fail the plan. Its time is bench/plan.py's figure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PHOTOSTACK_", "PULUMI_"))}
    env.update(PYTHONPATH=str(REPO_ROOT), PHOTOSTACK_STATE_DIR=str(tmp_path))
    done = subprocess.run(["unshare", "--net", sys.executable, "-m", "ops", "plan", "--stack", "prod"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("Policies: 12 checked, no violations.")
    assert "aws:ec2/instance:Instance" in done.stdout
