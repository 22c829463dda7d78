"""Lab hosts follow the lab AWS's EC2 instance states (lab/ec2_hosts.py): what the reconciler
decides from state changes, and (lab-marked, root, under the lab lock) a real host stopped and
started through the EC2 API."""

from __future__ import annotations

import subprocess

import pytest

from lab import hosts
from lab.ec2_hosts import Action, Seen, decide
from tests.e2e.conftest import wait_until
from tests.lab_stack.conftest import instance_of, operator_client

NODE = "memcached-0"  # a host no other lab test needs while it is down (the app reads through a cache miss)


def seen(instance_id: str, state: str, node: str = "app-1", address: str = "10.0.1.7") -> Seen:
    return Seen(instance_id, node, state, address)


def test_a_stopped_instance_stops_its_host_cleanly_or_at_once_when_forced():
    hosts_of = {"i-1": "app-1", "i-2": "app-0"}
    actions = decide({"i-1": "running", "i-2": "running"}, [seen("i-1", "stopped"), seen("i-2", "stopped", "app-0")],
                     hosts_of, forced={"i-2"})
    assert sorted(actions, key=lambda a: a.host) == [Action("kill", "i-2", "app-0"), Action("stop", "i-1", "app-1")]


def test_a_started_instance_boots_its_own_host_again():
    assert decide({"i-1": "stopped"}, [seen("i-1", "running")], {"i-1": "app-1"}, set()) == [
        Action("start", "i-1", "app-1")]


def test_only_changes_act_a_host_dead_while_ec2_says_running_stays_dead():
    assert decide({"i-1": "running"}, [seen("i-1", "running")], {"i-1": "app-1"}, set()) == []
    assert decide({"i-1": "stopped"}, [seen("i-1", "stopped")], {"i-1": "app-1"}, set()) == []


def test_a_replacement_takes_the_name_of_the_terminated_host_after_it_is_removed():
    actions = decide({"i-1": "running"}, [seen("i-1", "terminated"), seen("i-9", "running", address="10.0.1.9")],
                     {"i-1": "app-1"}, set())
    assert actions == [Action("remove", "i-1", "app-1"), Action("launch", "i-9", "app-1", "10.0.1.9")]


def test_a_second_live_instance_of_a_node_gets_a_host_named_by_its_id():
    actions = decide({"i-1": "running"}, [seen("i-1", "running"), seen("i-9", "pending")], {"i-1": "app-1"}, set())
    assert actions == [Action("launch", "i-9", "i-9", "10.0.1.7")]


def test_a_terminated_instance_is_removed_once_and_unknown_ones_never():
    assert decide({"i-1": "terminated"}, [seen("i-1", "terminated")], {"i-1": "app-1"}, set()) == []
    assert decide({}, [seen("i-5", "terminated"), seen("i-6", "stopped")], {}, set()) == []


def _host_key(address: str) -> str:
    found = subprocess.run(["ssh-keyscan", "-T", "5", "-t", "ed25519", address], capture_output=True, text=True)
    return " ".join(line.split(None, 1)[1] for line in found.stdout.splitlines() if not line.startswith("#"))


@pytest.mark.lab
def test_stopping_an_instance_stops_its_host_and_starting_it_boots_the_same_host(lab_green):
    ec2 = operator_client("ec2")
    (address,) = [i.private_ip for i in lab_green.plan.instances if i.node == NODE]
    instance = instance_of(NODE)
    key = _host_key(address)
    assert key, f"{NODE}: no host key at {address}:22 before the stop"

    ec2.stop_instances(InstanceIds=[instance])
    try:
        assert wait_until(lambda: not hosts.cgroup_pids("unified", NODE), timeout=60), "the host still runs"
        assert not hosts.wait_port(address, 22, 2), f"{NODE}'s sshd still answers after StopInstances"
    finally:
        ec2.start_instances(InstanceIds=[instance])
    ec2.get_waiter("instance_running").wait(InstanceIds=[instance])
    assert hosts.wait_port(address, 22, 120), f"{NODE}: sshd not back after StartInstances: {hosts.console_text(NODE)[-2000:]}"
    assert _host_key(address) == key  # the same instance: the same root disk, so the same host keys
