"""`ops replace-node` on AWS against a moto server over real HTTP: instances created through the EC2
API with the program's tags, the ALB target groups holding them, and the `ops` CLI in a subprocess
with boto3 pointed at the server by `AWS_ENDPOINT_URL`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from infra.config import load_stack_config
from infra.tagging import tags
from infra.topology import nodes
from ops.maintenance import terminate_instance

REPO = Path(__file__).resolve().parent.parent
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def aws(moto_account, monkeypatch):
    """ec2 and elbv2 clients on an empty moto account; `calls` records every API call in order."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    session = boto3.session.Session(region_name="us-east-1")
    ec2, elbv2 = session.client("ec2", endpoint_url=moto_account), session.client("elbv2", endpoint_url=moto_account)
    calls: list[tuple[str, dict]] = []
    for client in (ec2, elbv2):
        client.meta.events.register("before-parameter-build", lambda model, params, **_: calls.append((model.name, params)))
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.0.0/19", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    return {"ec2": ec2, "elbv2": elbv2, "calls": calls, "vpc": vpc, "subnet": subnet, "endpoint": moto_account}


def _launch(aws, stack: str, role: str, node: str, public: bool = False) -> str:
    """An instance created through the EC2 API with the tags the Pulumi program gives it (infra/fleet.py)."""
    tag_list = [{"Key": k, "Value": v} for k, v in tags(stack, role, node, node=node).items()]
    made = aws["ec2"].run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.micro",
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": aws["subnet"], "AssociatePublicIpAddress": public}],
        TagSpecifications=[{"ResourceType": "instance", "Tags": tag_list}],
    )
    return made["Instances"][0]["InstanceId"]


def _group(aws, name: str, port: int, instances: list[str]) -> str:
    """A target group of instances on `port`, like the program's nginx group (infra/load_balancer.py)."""
    elbv2 = aws["elbv2"]
    arn = elbv2.create_target_group(Name=name, Protocol="HTTP", Port=port, VpcId=aws["vpc"],
                                    TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": i, "Port": port} for i in instances])
    return arn


def _registered(aws, arn: str) -> set[str]:
    return {d["Target"]["Id"] for d in aws["elbv2"].describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]}


def _states(aws) -> dict[str, str]:
    found = aws["ec2"].describe_instances()["Reservations"]
    return {i["InstanceId"]: i["State"]["Name"] for r in found for i in r["Instances"]}


def _called(aws, *operations: str) -> list[tuple[str, dict]]:
    """The recorded calls of these API operations, in order."""
    return [(name, params) for name, params in aws["calls"] if name in operations]


@pytest.fixture
def web(aws):
    """prod's two nginx nodes behind its target group, nginx-0 also in a second group; staging's
    nginx-0 (same node name, other stack) in staging's group."""
    ids = {node: _launch(aws, "prod", "nginx", node) for node in ("nginx-0", "nginx-1")}
    ids["app-0"] = _launch(aws, "prod", "app", "app-0")
    ids["staging nginx-0"] = _launch(aws, "staging", "nginx", "nginx-0")
    groups = {
        "prod": _group(aws, "prod-nginx", 80, [ids["nginx-0"], ids["nginx-1"]]),
        "prod-alt": _group(aws, "prod-nginx-alt", 8080, [ids["nginx-0"]]),
        "staging": _group(aws, "staging-nginx", 80, [ids["staging nginx-0"]]),
    }
    aws["calls"].clear()
    return ids, groups


def test_terminate_deregisters_the_node_everywhere_waits_for_draining_then_terminates(aws, web):
    ids, groups = web
    assert terminate_instance("prod", "nginx-0", aws["ec2"], aws["elbv2"]) == ids["nginx-0"]
    calls = list(aws["calls"])

    assert _registered(aws, groups["prod"]) == {ids["nginx-1"]}
    assert _registered(aws, groups["prod-alt"]) == set()
    assert _registered(aws, groups["staging"]) == {ids["staging nginx-0"]}
    states = _states(aws)
    assert states.pop(ids["nginx-0"]) in ("shutting-down", "terminated")
    assert set(states.values()) == {"running"}
    # Deregistered with its registered port from exactly the two groups holding it, then
    # terminated once both report it drained (the waiter asks about that target): in-flight
    # requests finish within the deregistration delay instead of being cut.
    changes = [(name, params.get("TargetGroupArn"), params.get("Targets") or params.get("InstanceIds"))
               for name, params in calls
               if name in ("DeregisterTargets", "TerminateInstances")
               or (name == "DescribeTargetHealth" and "Targets" in params)]
    prod_target, alt_target = [{"Id": ids["nginx-0"], "Port": 80}], [{"Id": ids["nginx-0"], "Port": 8080}]
    assert sorted(changes[:2]) == sorted([("DeregisterTargets", groups["prod"], prod_target),
                                          ("DeregisterTargets", groups["prod-alt"], alt_target)])
    assert sorted(changes[2:4]) == sorted([("DescribeTargetHealth", groups["prod"], prod_target),
                                           ("DescribeTargetHealth", groups["prod-alt"], alt_target)])
    assert changes[4:] == [("TerminateInstances", None, [ids["nginx-0"]])]


def test_a_stopped_instance_is_deregistered_and_terminated_too(aws, web):
    ids, groups = web
    aws["ec2"].stop_instances(InstanceIds=[ids["nginx-1"]])
    assert terminate_instance("prod", "nginx-1", aws["ec2"], aws["elbv2"]) == ids["nginx-1"]
    assert _registered(aws, groups["prod"]) == {ids["nginx-0"]}
    assert _states(aws)[ids["nginx-1"]] in ("shutting-down", "terminated")


@pytest.mark.parametrize("node, terminated_before", [("nginx-7", False), ("app-0", True)], ids=["never", "terminated"])
def test_a_node_without_a_live_instance_is_one_clear_error_and_nothing_changes(aws, web, node, terminated_before):
    ids, groups = web
    if terminated_before:  # a terminated instance is not the node's live instance
        aws["ec2"].terminate_instances(InstanceIds=[ids[node]])
        aws["calls"].clear()
    with pytest.raises(ValueError) as error:
        terminate_instance("prod", node, aws["ec2"], aws["elbv2"])
    assert str(error.value) == f"{node}: no live instance tagged photostack:stack=prod, photostack:node={node}"
    assert _called(aws, "DeregisterTargets", "TerminateInstances") == []
    assert _registered(aws, groups["prod"]) == {ids["nginx-0"], ids["nginx-1"]}


def test_two_live_instances_of_one_node_are_refused_not_both_terminated(aws, web):
    ids, groups = web
    # E.g. during a `pulumi up` replacing the instance (create before delete), or a stray copy.
    second = _launch(aws, "prod", "nginx", "nginx-0")
    aws["calls"].clear()
    with pytest.raises(ValueError) as error:
        terminate_instance("prod", "nginx-0", aws["ec2"], aws["elbv2"])
    message = str(error.value)
    assert message.startswith("nginx-0: 2 live instances tagged photostack:stack=prod, photostack:node=nginx-0 (")
    assert ids["nginx-0"] in message and second in message and "\n" not in message
    assert _called(aws, "DeregisterTargets", "TerminateInstances") == []
    assert set(_states(aws).values()) == {"running"}


# --- through the CLI ------------------------------------------------------------------------

def _stack_resources(aws, stack: str) -> dict[str, str]:
    """What the program creates that a relaunch reads, named and tagged as infra/ does: a private
    subnet per zone, a launch template per role (its image the stack's pinned one), the release
    bucket. Returns the ids by name."""
    config, ec2 = load_stack_config(stack), aws["ec2"]
    made = {}
    for index, zone in enumerate(config.availability_zones):
        subnet = ec2.create_subnet(VpcId=aws["vpc"], CidrBlock=f"10.30.{64 + 16 * index}.0/20", AvailabilityZone=zone,
                                   TagSpecifications=[{"ResourceType": "subnet", "Tags": _tag_list(
                                       tags(stack, "network", f"private-{zone}"))}])
        made[f"private-{zone}"] = subnet["Subnet"]["SubnetId"]
    for role in {n.role for n in nodes(config)}:
        template = ec2.create_launch_template(
            LaunchTemplateName=f"{stack}-{role}", LaunchTemplateData={"ImageId": config.ami, "InstanceType": "t3.micro"},
            TagSpecifications=[{"ResourceType": "launch-template", "Tags": _tag_list(tags(stack, role, role))}],
        )
        made[f"template-{role}"] = template["LaunchTemplate"]["LaunchTemplateId"]
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=aws["endpoint"])
    s3.create_bucket(Bucket=f"{stack}-release-bucket")
    s3.put_bucket_tagging(Bucket=f"{stack}-release-bucket", Tagging={"TagSet": _tag_list(tags(stack, "release", "release"))})
    s3.create_bucket(Bucket=f"{stack}-untagged")
    return made


def _tag_list(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in values.items()]


@pytest.fixture
def staging(aws, tmp_path):
    """The staging topology on EC2 (every node plus the bastion), nginx-0 behind the target group;
    the environment that points a subprocess's boto3 at the moto server."""
    config = load_stack_config("staging")
    aws["made"] = _stack_resources(aws, "staging")
    ids = {node.name: _launch(aws, "staging", node.role, node.name) for node in nodes(config)}
    _launch(aws, "staging", "bastion", "bastion", public=True)
    group = _group(aws, "staging-nginx", 80, [ids["nginx-0"]])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PHOTOSTACK_"))}
    env.update(CREDENTIALS, AWS_ENDPOINT_URL=aws["endpoint"], PYTHONPATH=str(REPO),
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               PHOTOSTACK_STATE_DIR=str(tmp_path / "state"))
    return ids, group, env


def _ops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ops", "--stack", "staging", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def _node_instances(aws, node: str) -> list[dict]:
    found = aws["ec2"].describe_instances(Filters=[{"Name": "tag:photostack:node", "Values": [node]},
                                                   {"Name": "tag:photostack:stack", "Values": ["staging"]}])
    return [i for r in found["Reservations"] for i in r["Instances"]]


def test_cli_replace_node_relaunches_it_from_its_launch_template_without_pulumi(aws, staging):
    ids, group, env = staging
    config = load_stack_config("staging")
    (node,) = [n for n in nodes(config) if n.name == "nginx-0"]
    done = _ops(env, "replace-node", "nginx-0", "--yes", "--no-peers")  # moto's instances have no hosts to converge
    assert done.returncode == 0, done.stdout + done.stderr
    (new,) = [i for i in _node_instances(aws, "nginx-0") if i["InstanceId"] != ids["nginx-0"]]
    text = " ".join(done.stdout.split())  # rich wraps the line at the terminal's width
    assert text.startswith(f"replaced {ids['nginx-0']} with {new['InstanceId']} (nginx-0) "
                           f"from {aws['made']['template-nginx']} ($Latest) in {node.az};")
    assert f"aws:ec2/instance:Instance fleet-nginx-nginx-0 {new['InstanceId']}" in text
    assert _states(aws)[ids["nginx-0"]] in ("shutting-down", "terminated")
    # The replacement: the template's image, the node's subnet and AZ, tags and user_data.
    assert new["State"]["Name"] == "running" and new["ImageId"] == config.ami
    assert new["SubnetId"] == aws["made"][f"private-{node.az}"] and new["Placement"]["AvailabilityZone"] == node.az
    own_tags = {t["Key"]: t["Value"] for t in new["Tags"] if not t["Key"].startswith("aws:")}  # AWS adds the template's
    assert own_tags == tags("staging", "nginx", "nginx-0", node="nginx-0")
    user_data = aws["ec2"].describe_instance_attribute(InstanceId=new["InstanceId"], Attribute="userData")
    script = base64.b64decode(user_data["UserData"]["Value"]).decode()
    assert "ops --stack staging converge --host nginx-0 --local" in script and "staging-release-bucket" in script
    # In the old one's target group instead of it; every other node untouched.
    assert _registered(aws, group) == {new["InstanceId"]}
    assert {s for i, s in _states(aws).items() if i != ids["nginx-0"]} == {"running"}


def test_cli_replaces_a_stopped_node(aws, staging):
    """A stopped instance is exactly one to replace, though the SSH inventory (running hosts) omits it."""
    ids, _, env = staging
    aws["ec2"].stop_instances(InstanceIds=[ids["app-1"]])
    done = _ops(env, "replace-node", "app-1", "--yes", "--no-peers")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"replaced {ids['app-1']} with i-")
    assert _states(aws)[ids["app-1"]] in ("shutting-down", "terminated")
    assert [i["State"]["Name"] for i in _node_instances(aws, "app-1") if i["InstanceId"] != ids["app-1"]] == ["running"]


def test_a_missing_launch_template_changes_nothing(aws, staging):
    ids, _, env = staging
    aws["ec2"].delete_launch_template(LaunchTemplateId=aws["made"]["template-worker"])
    done = _ops(env, "replace-node", "worker-0", "--yes")
    assert done.returncode == 2
    assert "launch template of role worker in stack staging: expected one, found 0" in done.stdout + done.stderr
    assert _states(aws)[ids["worker-0"]] == "running" and len(_node_instances(aws, "worker-0")) == 1


def test_cli_unknown_missing_or_data_node_is_one_line_exit_2_and_terminates_nothing(aws, staging):
    ids, _, env = staging
    known = ", ".join(n.name for n in nodes(load_stack_config("staging")))
    unknown = _ops(env, "replace-node", "app-9", "--yes")
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines() == [f"error: no node named 'app-9' in stack staging (nodes: {known})"]

    aws["ec2"].terminate_instances(InstanceIds=[ids["worker-0"]])
    missing = _ops(env, "replace-node", "worker-0", "--yes")
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        "error: worker-0: no live instance tagged photostack:stack=staging, photostack:node=worker-0"
    ]
    assert missing.stdout == ""

    data = _ops(env, "replace-node", "postgres-0-primary", "--yes")
    assert data.returncode == 2
    assert data.stderr.splitlines() == [
        "error: postgres-0-primary: use `ops failover --shard N` / `ops rebuild-replica --shard N` (shard_primary_down.md)"
    ]
    assert {s for i, s in _states(aws).items() if i != ids["worker-0"]} == {"running"}


def _audit(aws) -> list[dict]:
    logs = boto3.client("logs", region_name="us-east-1", endpoint_url=aws["endpoint"])
    events = logs.filter_log_events(logGroupName="/photostack/staging/ops-audit")["events"]
    return [json.loads(e["message"]) for e in sorted(events, key=lambda e: e["timestamp"])]


def test_cli_replace_node_waits_for_nobody_else_holding_the_shared_lock(aws, staging):
    """The lock lives in SSM, not on this laptop: another operator's failover stops the replace."""
    ids, _, env = staging
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=aws["endpoint"])
    theirs = {"owner": "bob", "host": "bobs-laptop", "pid": 4242, "since": time.time() - 300, "purpose": "failover --shard 0"}
    ssm.put_parameter(Name="/photostack/staging/ops/lock", Value=json.dumps(theirs), Type="String")
    refused = _ops(env, "replace-node", "app-0", "--yes")
    assert refused.returncode == 2
    said = " ".join((refused.stdout + refused.stderr).split())  # one line, however rich wraps it
    assert said.startswith("error: deploy lock held: failover --shard 0 by bob@bobs-laptop (pid 4242)")
    assert _states(aws)[ids["app-0"]] == "running" and len(_node_instances(aws, "app-0")) == 1

    ssm.delete_parameter(Name="/photostack/staging/ops/lock")
    done = _ops(env, "replace-node", "app-0", "--yes", "--no-peers")
    assert done.returncode == 0, done.stdout + done.stderr
    with pytest.raises(ssm.exceptions.ParameterNotFound):  # released
        ssm.get_parameter(Name="/photostack/staging/ops/lock")
    trail = _audit(aws)
    assert [(e["command"], e["outcome"].split(":")[0]) for e in trail] == [("replace-node app-0", "refused"),
                                                                           ("replace-node app-0", "ok")]


def test_cli_replace_node_dry_run_prints_the_steps_and_changes_nothing(aws, staging):
    ids, group, env = staging
    config = load_stack_config("staging")
    (node,) = [n for n in nodes(config) if n.name == "nginx-0"]
    done = _ops(env, "replace-node", "nginx-0", "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert lines == [
        "would:",
        f"1. deregister {ids['nginx-0']} from staging-nginx:80 and wait out the draining",
        f"2. terminate {ids['nginx-0']}",
        f"3. launch from launch template {aws['made']['template-nginx']} ($Latest) in subnet "
        f"{aws['made'][f'private-{node.az}']} ({node.az}) with the tags and user_data of nginx-0",
        "4. register the new instance in staging-nginx:80",
        "5. once it has published its SSH host keys, converge every other host of the stack "
        "(their roles follow it to its new address)",
    ]
    assert set(_states(aws).values()) == {"running"} and len(_node_instances(aws, "nginx-0")) == 1
    assert _registered(aws, group) == {ids["nginx-0"]}
