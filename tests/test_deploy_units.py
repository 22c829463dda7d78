"""Rolling deploy: exact host commands, batches of the one-box, the pinned release in converge,
the deploy lock, and the ALB target-group balancer against a moto server over real HTTP."""

from __future__ import annotations

import subprocess

import boto3
import pytest

from infra.inventory import TAG_NODE, TAG_STACK
from infra.records import record
from infra.topology import Node
from ops import lock, rollout
from ops.stack import Stack
from roles.app import deploy as steps
from roles.app import release as rel
from roles.app import runtime
from roles.engine.resources import Command


def test_host_step_commands_are_exact():
    assert steps.shipped_version("abc123") == "[ -f /opt/photostack/releases/abc123/.release ]"
    assert steps.current_version() == 'basename "$(readlink /opt/photostack/current)" 2>/dev/null || true'
    assert steps.runs_release("/run/photostack/app-8001.pid", "abc123") == (
        '[ "$(readlink /proc/$(cat /run/photostack/app-8001.pid 2>/dev/null)/cwd)" = /opt/photostack/releases/abc123 ]')
    assert steps.listens("/run/photostack/app-8001.pid", 8001) == (
        'ss -Hltnp "sport = :8001" | grep -q "pid=$(cat /run/photostack/app-8001.pid 2>/dev/null),"')
    assert steps.healthy("127.0.0.1", 8001) == "curl -fs -o /dev/null --max-time 2 http://127.0.0.1:8001/health"
    assert steps.wait_until("true", 5) == ("timeout 5 sh -c 'until true; do sleep 0.2; done' || "
                                           "{ echo 'not ready after 5s: true'; exit 1; }")
    release = rel.Release("v1", b"tar", "django==5\n")
    assert steps.ship_if_missing(release) == (
        f"{{ {rel.venv_ready(release)} || {{ {rel.venv_script(release)}; }}; }} && "
        f"{{ {rel.shipped(release)} || {{ {rel.ship_script(release)}; }}; }}")


def test_wait_until_fails_with_one_line_naming_the_check():
    done = subprocess.run(["sh", "-c", steps.wait_until("false", 1)], capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout.strip() == "not ready after 1s: false"


def test_onebox_batches_are_each_app_node_then_workers(state_root):
    stack = Stack.load("onebox")
    found = rollout.batches(stack)
    assert [b.name for b in found] == ["app-0", "app-1", "worker-0"]
    assert [b.health for b in found] == [("127.0.0.1", 8001), ("127.0.0.1", 8002), None]
    assert [b.pidfile for b in found] == ["/run/photostack/app-8001.pid", "/run/photostack/app-8002.pid",
                                          "/run/photostack/worker-0.pid"]
    assert [[s.name for s in b.services] for b in found] == [["gunicorn 8001"], ["gunicorn 8002"], ["celery worker-0"]]


def test_converge_keeps_a_pinned_release_and_follows_the_tree_otherwise(state_root):
    stack = Stack.load("onebox")
    built = rel.build_release()

    def switch() -> str:
        return next(r.name for r in stack.desired(stack.hosts[0], {"app"}).resources
                    if isinstance(r, Command) and r.name.startswith("current →"))

    assert switch() == f"current → {built.version}"
    store = record(stack.config, stack.name, runtime.RELEASE_RECORD)
    store.save({"version": "old123", "previous": built.version, "pinned": True})
    assert switch() == "current → old123"
    store.save({"version": built.version, "previous": "old123", "pinned": False})
    assert switch() == f"current → {built.version}"


def test_a_bad_version_is_one_clear_error():
    with pytest.raises(rollout.DeployFailed, match="--version no-such-rev: not a git revision"):
        rollout.build("no-such-rev")


def test_rollback_without_a_recorded_deploy_says_so(state_root):
    with pytest.raises(rollout.DeployFailed, match="no previous release recorded"):
        rollout.rollback(Stack.load("onebox"))


def test_second_deploy_stops_on_the_lock(state_root):
    stack = Stack.load("onebox")
    stack.state.mkdir(parents=True, exist_ok=True)
    with lock.held(stack.state / rollout.LOCK_FILE, "deploy v1"):
        with pytest.raises(lock.LockHeld, match="deploy lock held: deploy v1 by"):
            rollout.deploy(stack, balancer=rollout.NginxBalancer(stack))


@pytest.fixture(scope="module")
def aws(moto_endpoint):
    kwargs = dict(endpoint_url=moto_endpoint, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
    return boto3.client("ec2", **kwargs), boto3.client("elbv2", **kwargs)


def test_target_group_balancer_deregisters_and_registers_the_node(aws):
    ec2, elbv2 = aws
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    instances = {}
    for node in ("app-0", "app-1"):
        made = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                 TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                     {"Key": TAG_STACK, "Value": "prod"}, {"Key": TAG_NODE, "Value": node}]}])
        instances[node] = made["Instances"][0]["InstanceId"]
    group = elbv2.create_target_group(Name="prod-app", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]
    arn = group["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": i, "Port": 80} for i in instances.values()])

    def targets() -> set[str]:
        return {d["Target"]["Id"] for d in elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]}

    balancer = rollout.TargetGroupBalancer("prod", ec2, elbv2)
    batch = rollout.Batch(Node("app", 0, "us-east-1a"), None, (), "", ("10.0.0.5", 8000))  # type: ignore[arg-type]
    balancer.drain(batch)
    assert targets() == {instances["app-1"]}
    balancer.restore(batch)
    assert targets() == set(instances.values())
