"""Shared operations state on AWS against a moto server over HTTP: the one lock (an SSM parameter
created without Overwrite) and the audit trail (CloudWatch Logs); the same on the one-box as files."""

from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

import boto3
import pytest

from infra.targets.aws import AwsTarget
from infra.targets.onebox import OneBoxTarget
from ops import audit
from ops.lock import LockHeld, LockInfo, SsmStore, held, lock_parameter

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def clients(moto_account, monkeypatch):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    session = boto3.session.Session(region_name="us-east-1")
    return session.client("ssm", endpoint_url=moto_account), session.client("logs", endpoint_url=moto_account)


def _someone_else(ssm, purpose: str, minutes_ago: int) -> LockInfo:
    """A lock taken by another operator on another machine."""
    info = LockInfo("bob", "bobs-laptop", 4242, time.time() - 60 * minutes_ago, purpose)
    ssm.put_parameter(Name=lock_parameter("prod"), Value=json.dumps(info.__dict__), Type="String")
    return info


def test_one_lock_for_every_operator_names_holder_command_and_age(clients):
    ssm, _ = clients
    store = SsmStore(ssm, lock_parameter("prod"))
    with held(store, "failover --shard 3") as mine:
        assert store.read() == mine
        # A second operator (another process with its own client) is refused, told who and since when.
        with pytest.raises(LockHeld) as error:
            with held(SsmStore(boto3.client("ssm", endpoint_url=ssm.meta.endpoint_url), lock_parameter("prod")), "deploy v9"):
                pass
        message = str(error.value)
        assert message.startswith("deploy lock held: failover --shard 3 by ") and "s ago)" in message
        assert f"SSM parameter {lock_parameter('prod')}" in message
    assert store.read() is None
    # Stacks do not share a lock.
    with held(SsmStore(ssm, lock_parameter("prod")), "deploy"), held(SsmStore(ssm, lock_parameter("staging")), "deploy"):
        pass


def test_force_takes_a_live_lock_says_what_it_breaks_and_the_old_holder_does_not_free_it(clients):
    ssm, _ = clients
    store = SsmStore(ssm, lock_parameter("prod"))
    theirs = _someone_else(ssm, "deploy v8", minutes_ago=42)
    with pytest.raises(LockHeld, match=r"deploy v8 by bob@bobs-laptop \(pid 4242\) since .* \(42 min ago\)"):
        with held(store, "replace-node app-3"):
            pass
    assert store.read() == theirs
    notes: list[str] = []
    with held(store, "replace-node app-3", notes, force=True) as mine:
        assert store.read() == mine
        assert len(notes) == 1 and notes[0].startswith("forced the lock held by deploy v8 by bob@bobs-laptop")
        assert "both now change the stack at once" in notes[0]
    assert store.read() is None
    # A holder whose lock was forced meanwhile leaves the new holder's lock in place.
    with held(store, "deploy v8") as first:
        assert store.read() == first
        ssm.delete_parameter(Name=lock_parameter("prod"))  # what bob's --force does
        forcer = _someone_else(ssm, "failover --shard 1", minutes_ago=0)
    assert store.read() == forcer


def _stack(target: str, tmp_path, monkeypatch) -> SimpleNamespace:
    """What ops.audit reads of a stack: its name and its target (of a config with just a region);
    the state dir is `tmp_path/prod`."""
    monkeypatch.setenv("PHOTOSTACK_STATE_DIR", str(tmp_path))
    kind = AwsTarget if target == "aws" else OneBoxTarget
    return SimpleNamespace(name="prod", target=kind(SimpleNamespace(region="us-east-1")))


@pytest.mark.parametrize("target", ["aws", "onebox"])
def test_the_audit_trail_records_who_what_when_and_the_outcome(clients, tmp_path, target, monkeypatch):
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("AWS_ENDPOINT_URL", clients[0].meta.endpoint_url)
    stack = _stack(target, tmp_path, monkeypatch)
    before = time.time()
    with audit.recorded(stack, "cache flush"):
        pass
    with pytest.raises(LockHeld), audit.recorded(stack, "deploy v2"):
        raise LockHeld("deploy lock held: deploy v1 by bob@x")
    with pytest.raises(RuntimeError), audit.recorded(stack, "failover --shard 2"):
        raise RuntimeError("shard2r1: promote: timed out\nsecond line")
    entries = audit.trail(stack).read(10)
    assert [(e.who, e.command, e.outcome) for e in entries] == [
        ("alice", "cache flush", "ok"),
        ("alice", "deploy v2", "refused: deploy lock held: deploy v1 by bob@x"),
        ("alice", "failover --shard 2", "failed: shard2r1: promote: timed out"),
    ]
    assert all(before - 1 <= e.at <= time.time() + 1 and e.host == os.uname().nodename for e in entries)
    if target == "aws":  # where every operator reads it
        logs = clients[1]
        (group,) = logs.describe_log_groups(logGroupNamePrefix="/photostack/prod/")["logGroups"]
        assert group["logGroupName"] == audit.log_group("prod")
    else:
        assert len((tmp_path / "prod" / audit.AUDIT_FILE).read_text().splitlines()) == 3


@pytest.mark.parametrize("step", ["move", "resume", "rollback"])
def test_logical_shard_moves_wait_for_the_shared_lock_too(clients, state_root, monkeypatch, step):
    """A shard move on AWS takes the stack's one lock (SSM), not a file on this laptop: another
    operator's deploy stops it before anything is read or written."""
    from ops import reshard
    from ops.stack import Stack

    ssm, _ = clients
    monkeypatch.setenv("AWS_ENDPOINT_URL", ssm.meta.endpoint_url)
    theirs = _someone_else(ssm, "deploy v8", minutes_ago=3)
    stack = Stack.load("prod")
    run = {"move": lambda: reshard.move(stack, [(24, 0, 1)]), "resume": lambda: reshard.resume(stack),
           "rollback": lambda: reshard.rollback(stack)}[step]
    with pytest.raises(LockHeld, match=r"^deploy lock held: deploy v8 by bob@bobs-laptop"):
        run()
    assert SsmStore(ssm, lock_parameter("prod")).read() == theirs
    assert not list(state_root.rglob("*.lock"))


def test_shard_commands_are_in_the_audit_trail_refused_ones_too(clients, tmp_path):
    """`ops shard move --resume` while another operator deploys: refused (exit 2), and recorded."""
    import subprocess
    import sys
    from pathlib import Path

    ssm, logs = clients
    _someone_else(ssm, "deploy v8", minutes_ago=3)
    repo = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PHOTOSTACK_"))}
    env.update(CREDENTIALS, AWS_ENDPOINT_URL=ssm.meta.endpoint_url, AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), PHOTOSTACK_STATE_DIR=str(tmp_path / "state"),
               PYTHONPATH=str(repo), USER="alice")
    done = subprocess.run([sys.executable, "-m", "ops", "--stack", "prod", "shard", "move", "--resume"], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("deploy lock held: deploy v8 by bob@"), done.stderr
    events = logs.filter_log_events(logGroupName=audit.log_group("prod"))["events"]
    (entry,) = [json.loads(e["message"]) for e in events]
    assert (entry["who"], entry["command"]) == ("alice", "shard move --resume")
    assert entry["outcome"].startswith("refused: deploy lock held: deploy v8 by bob@bobs-laptop")
