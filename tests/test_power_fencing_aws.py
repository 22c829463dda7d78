"""Fencing through the provider on AWS (infra/targets/aws.py power_off/power_on), against a moto
server over real HTTP: a failover powers the old primary's machine off whatever its network does,
and `rebuild-replica` starts it again."""

from __future__ import annotations

import boto3
import pytest

from infra.config import load_stack_config
from infra.tagging import tags
from infra.targets import target_of

STACK = "prod"


@pytest.fixture
def ec2(moto_account, monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_ENDPOINT_URL": moto_account}.items():
        monkeypatch.setenv(key, value)
    # The default session, which the target's clients come from: its event hooks see their calls.
    boto3.setup_default_session()
    calls: list[tuple[str, dict]] = []
    boto3.DEFAULT_SESSION.events.register("before-parameter-build.ec2",
                                          lambda model, params, **_: calls.append((model.name, dict(params))))
    client = boto3.client("ec2", region_name=load_stack_config(STACK).region)
    client.calls = calls
    yield client
    boto3.DEFAULT_SESSION = None


def _launch(ec2, node: str) -> str:
    tag_list = [{"Key": k, "Value": v} for k, v in tags(STACK, "postgres", node, node=node).items()]
    return ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.micro",
                             TagSpecifications=[{"ResourceType": "instance", "Tags": tag_list}])["Instances"][0]["InstanceId"]


def _state(ec2, instance: str) -> str:
    return ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]["State"]["Name"]


def test_power_off_force_stops_the_nodes_instance_and_power_on_starts_it_again(ec2):
    target = target_of(load_stack_config(STACK))
    primary, other = _launch(ec2, "shard0-primary"), _launch(ec2, "shard0-replica1")

    done = target.power_off(STACK, "shard0-primary")

    assert _state(ec2, primary) == "stopped" and _state(ec2, other) == "running"
    assert primary in done
    stops = [params for name, params in ec2.calls if name == "StopInstances"]
    assert stops == [{"InstanceIds": [primary], "Force": True}]  # no clean shutdown a hung host could stall

    assert primary in target.power_on(STACK, "shard0-primary")
    assert _state(ec2, primary) == "running"
    assert target.power_on(STACK, "shard0-primary") is None  # running already: nothing to do


def test_power_off_of_a_node_with_no_instance_is_one_clear_error(ec2):
    target = target_of(load_stack_config(STACK))
    with pytest.raises(ValueError, match="shard0-primary: no live instance tagged"):
        target.power_off(STACK, "shard0-primary")


def test_the_one_box_has_no_power_to_fence_with():
    target = target_of(load_stack_config("onebox"))
    assert target.power_off("onebox", "onebox") is None and target.power_on("onebox", "onebox") is None
