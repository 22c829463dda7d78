"""Every `ops` command that changes a stack is in the stack's audit trail with its outcome, run for
real: on an AWS stack (prod) whose shared state is a moto server over HTTP (the trail in
CloudWatch Logs, the lock in SSM) while another operator holds the stack's lock, so that each
command is refused or fails at its first step, and is recorded either way. The commands an AWS stack
refuses as bad input before they act (up, down, secret set: the one-box's) run on the one-box
where they can without touching its services (`secret set` in a private state dir); `up` and `down`
would converge or stop the real one-box, so for them the test holds their code to the one helper
that records (ops.day2._changing)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from ops import audit
from ops.lock import LockInfo, lock_parameter
from tests.test_ops_dry_run import READ_ONLY, leaf_commands

REPO = Path(__file__).resolve().parent.parent
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

# Each changing command as an operator runs it on prod (with --yes where it asks first).
ON_PROD = {
    "converge": ["converge"],
    "deploy": ["deploy"],
    "rollback": ["rollback"],
    "failover": ["failover", "--shard", "0", "--yes"],
    "rebuild-replica": ["rebuild-replica", "--shard", "0"],
    "redis-failover": ["redis-failover", "--yes"],
    "replace-node": ["replace-node", "app-0", "--yes"],
    "queue drain": ["queue", "drain", "--yes"],
    "queue requeue": ["queue", "requeue"],
    "cache flush": ["cache", "flush", "--yes"],
    "secret rotate": ["secret", "rotate", "djangoSecretKey"],
    "silence": ["silence", "--for", "30m", "--host", "app-0"],
    "alert-flush": ["alert-flush"],
    "pingdom sync": ["pingdom", "sync"],
    "backup": ["backup", "--shard", "0"],
    "restore": ["restore", "--shard", "0", "--latest", "--yes"],
    "restore-drill": ["restore-drill", "--shard", "0"],
    "shard add": ["shard", "add"],
    "shard remove": ["shard", "remove"],
    "shard move": ["shard", "move", "--resume"],
    "shard rebalance": ["shard", "rebalance", "--yes"],
}
ON_ONEBOX = {"secret set": ["secret", "set", "pingdomToken"]}
# They would converge or stop the real one-box (an AWS stack refuses them: `pulumi up` provisions it).
BY_CODE = {"up", "down"}


def test_the_lists_cover_every_changing_command():
    changing = set(leaf_commands()) - READ_ONLY
    assert set(ON_PROD) | set(ON_ONEBOX) | BY_CODE == changing


def _env(tmp_path: Path, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PHOTOSTACK_"))}
    env.update(CREDENTIALS, AWS_ENDPOINT_URL=endpoint, AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), PHOTOSTACK_STATE_DIR=str(tmp_path / "state"),
               # Pingdom: a closed port (the sync fails at its first request).
               PHOTOSTACK_PINGDOM_URL="https://127.0.0.1:9/api/3.1", PYTHONPATH=str(REPO), USER="alice",
               COLUMNS="300")
    return env


def _ops(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ops", *args], cwd=REPO, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_every_changing_command_on_an_aws_stack_is_in_its_shared_trail(moto_account, tmp_path, monkeypatch):
    """In this process (each command through the CLI's own entry, as a subprocess would run it,
    minus the interpreter's start)."""
    from typer.testing import CliRunner

    from ops.cli import app

    from infra.config import load_stack_config
    from infra.sharding import ShardMap
    from infra.targets.aws import pack_shard_map

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name="us-east-1")
    ssm, logs = session.client("ssm", endpoint_url=moto_account), session.client("logs", endpoint_url=moto_account)
    info = LockInfo("bob", "bobs-laptop", 4242, time.time() - 60, "deploy v8")
    ssm.put_parameter(Name=lock_parameter("prod"), Value=json.dumps(info.__dict__), Type="String")
    # What `pulumi up` writes and the Pingdom sync reads; a map with every logical shard on
    # physical shard 0, so that a rebalance has moves to make.
    ssm.put_parameter(Name="/photostack/prod/pingdomToken", Value="pingdom-token", Type="SecureString")
    config = load_stack_config("prod")
    lopsided = ShardMap((0,) * config.postgres.logical_shards, config.postgres.physical_shards)
    ssm.put_parameter(Name="/photostack/prod/shardmap", Value=pack_shard_map(lopsided), Type="String")
    # The bastion and one app host: enough for the commands to start, and no node any of them
    # would reach over SSH (those that do wait for the lock first).
    ec2 = session.client("ec2", endpoint_url=moto_account)
    for role, node in (("bastion", "bastion"), ("app", "app-0")):
        tags = {"photostack:stack": "prod", "photostack:role": role, "photostack:node": node}
        ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
    for key in [k for k in os.environ if k.startswith(("AWS_", "PHOTOSTACK_"))]:
        monkeypatch.delenv(key)
    for key, value in _env(tmp_path, moto_account).items():
        monkeypatch.setenv(key, value)
    trail, seen = audit.LogsTrail(logs, "prod"), 0
    outcomes = {}
    for name, args in ON_PROD.items():
        done = CliRunner().invoke(app, ["--stack", "prod", *args])
        entries = trail.read(1000)
        new, seen = entries[seen:], len(entries)
        assert len(new) == 1, f"`ops {' '.join(args)}`: {len(new)} audit entries ({done.output} {done.exception!r})"
        entry = new[0]
        assert entry.command.startswith(name) and entry.who == "alice", entry
        outcomes[name] = entry.outcome
    assert outcomes["backup"] == "refused: shard 0: no running host holds its members"
    locked = {n for n, outcome in outcomes.items() if outcome.startswith("refused: deploy lock held: deploy v8 by bob@")}
    assert {"converge", "deploy", "failover", "rebuild-replica", "redis-failover", "replace-node", "secret rotate",
            "restore", "shard add", "shard remove", "shard move", "shard rebalance"} <= locked, outcomes


def test_secret_set_records_the_name_never_the_value(tmp_path):
    env = _env(tmp_path, "http://127.0.0.1:9")
    done = _ops(env, "secret", "set", "pingdomToken", stdin="s3cret-pingdom-value\n")
    assert done.returncode == 0, done.stderr
    trail = (tmp_path / "state" / "onebox" / audit.AUDIT_FILE).read_text()
    (entry,) = [json.loads(line) for line in trail.splitlines()]
    assert (entry["who"], entry["command"], entry["outcome"]) == ("alice", "secret set pingdomToken", "ok")
    assert "s3cret" not in trail


@pytest.mark.parametrize("name", sorted(BY_CODE))
def test_up_and_down_record_through_the_one_helper(name):
    from ops import cli

    source = inspect.getsource(getattr(cli, name))
    assert f'day2._changing(loaded, "{name}"' in source
