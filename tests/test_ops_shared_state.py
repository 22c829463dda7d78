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
