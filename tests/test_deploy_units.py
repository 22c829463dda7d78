"""Rolling deploy: exact host commands, batches of the one-box, the pinned release in converge,
the deploy lock, and where an AWS deploy drains app nodes: in nginx, the planned topology running in
a moto server over real HTTP."""

from __future__ import annotations

import subprocess

import boto3
import pytest

from infra.inventory import TAG_NODE
from infra.plan import reveal
from infra.records import record
from infra.topology import nodes
from ops import lock, rollout
from ops.stack import Stack
from roles.app import deploy as steps
from roles.app import release as rel
from roles.app import runtime
from roles.engine.resources import Command
from tests._infra_plans import dependency, plan_of


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


INSTANCE = "aws:ec2/instance:Instance"
ATTACHMENT = "aws:lb/targetGroupAttachment:TargetGroupAttachment"


@pytest.fixture
def planned_staging(moto_account, monkeypatch, tmp_path):
    """Every instance of the staging plan (the bastion too) running in moto with its planned tags,
    and its SSM parameters, boto3 pointed at it; returns the plan."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_ENDPOINT_URL": moto_account, "PHOTOSTACK_STATE_DIR": str(tmp_path / "state")}.items():
        monkeypatch.setenv(key, value)
    plan = plan_of("staging")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.0.0/19", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    for instance in plan.of_type(INSTANCE):
        planned = instance.inputs["tags"]
        ec2.run_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.micro",
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet,
                                "AssociatePublicIpAddress": bool(instance.inputs.get("associatePublicIpAddress"))}],
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in planned.items()]}],
        )
    ssm = boto3.client("ssm", region_name="us-east-1")
    for parameter in plan.of_type("aws:ssm/parameter:Parameter"):  # what `pulumi up` wrote
        value = reveal(parameter.inputs["value"]) if "value" in parameter.inputs else parameter.inputs["insecureValue"]
        ssm.put_parameter(Name=parameter.inputs["name"], Type=parameter.inputs["type"], Value=value)
    return plan


class RenderingNginx(rollout.NginxBalancer):
    """Instead of converging the nginx hosts over SSH, keeps the site each would be converged to."""

    sites: dict[str, str] = {}

    def reload(self, step: str) -> None:
        self.sites = {host.name: next(r.content for r in self.stack.desired(host, {"nginx"}).resources
                                      if getattr(r, "path", "") == "/etc/nginx/conf.d/photostack.conf")
                      for host in self.hosts}


def test_on_aws_a_deploy_drains_app_nodes_in_nginx_where_the_load_balancer_sends_traffic(planned_staging):
    plan = planned_staging
    stack = Stack.load("staging")
    nginx_nodes = sorted(n.name for n in nodes(stack.config) if n.role == "nginx")
    # The planned ALB target group holds the nginx hosts, and only them: app servers sit behind nginx.
    attached = {dependency(plan, a, "targetId").inputs["tags"][TAG_NODE] for a in plan.of_type(ATTACHMENT)}
    assert sorted(attached) == nginx_nodes
    balancer = rollout.balancer_for(stack)
    assert type(balancer) is rollout.NginxBalancer and sorted(h.name for h in balancer.hosts) == nginx_nodes

    rendering = RenderingNginx(stack)
    batch = next(b for b in rollout.batches(stack) if b.node.role == "app")
    address = next(h.address for h in stack.hosts if h.name == batch.name)
    rendering.drain(batch)
    stored = boto3.client("ssm", region_name="us-east-1").get_parameter(Name="/photostack/staging/drained")
    assert stored["Parameter"]["Value"] == f'["{batch.name}"]'
    assert set(rendering.sites) == set(nginx_nodes)
    for site in rendering.sites.values():
        (line,) = [ln for ln in site.splitlines() if f"server {address}:8001 " in ln]
        assert line.rstrip().endswith(" down;"), line
    rendering.restore(batch)
    for site in rendering.sites.values():
        (line,) = [ln for ln in site.splitlines() if f"server {address}:8001 " in ln]
        assert "down" not in line, line
