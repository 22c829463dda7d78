"""Rolling deploy: host steps run on a scratch root, batches of the one-box, the pinned release in converge,
the deploy lock, and where an AWS deploy drains app nodes: in nginx, the planned topology running in
a moto server over real HTTP."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import pytest

from infra.inventory import TAG_NODE
from infra.offline_plan import reveal
from infra.records import record
from infra.topology import nodes
from ops import lock, rollout
from ops.stack import Stack
from roles.app import deploy as steps
from roles.app import release as rel
from roles.app import runtime
from roles.engine.resources import Command
from tests._infra_plans import dependency, plan_of
from tests.fakes.base import JsonHandler, LocalServer


def _scratch(command: str, root) -> int:
    """Run a host step with /opt/photostack moved under `root`; its exit code."""
    return subprocess.run(["bash", "-c", command.replace(rel.ROOT, str(root))], capture_output=True,
                          timeout=30).returncode


def _tarball(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_ship_and_version_steps_on_a_scratch_root(tmp_path):
    release = rel.Release("v1", _tarball({"app/views.py": "print('v1')\n"}), "django==5\n")
    venv = tmp_path / Path(release.venv).relative_to(rel.ROOT)
    venv.mkdir(parents=True)
    (venv / ".complete").touch()  # built already: the step must not rebuild it
    assert _scratch(steps.shipped_version("v1"), tmp_path) != 0
    assert _scratch(steps.ship_if_missing(release), tmp_path) == 0
    shipped = tmp_path / "releases" / "v1"
    assert (shipped / "app" / "views.py").read_text() == "print('v1')\n" and (shipped / ".release").read_text() == "v1\n"
    assert _scratch(steps.shipped_version("v1"), tmp_path) == 0 and _scratch(steps.shipped_version("v2"), tmp_path) != 0
    (shipped / "left-alone").touch()
    assert _scratch(steps.ship_if_missing(release), tmp_path) == 0 and (shipped / "left-alone").exists()  # not unpacked again

    def current() -> str:
        command = steps.current_version().replace(rel.ROOT, str(tmp_path))
        return subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True).stdout.strip()

    assert current() == ""
    (tmp_path / "current").symlink_to(shipped)
    assert current() == "v1"


def test_process_steps_check_the_process_in_the_pidfile(tmp_path):
    shipped = tmp_path / "releases" / "v1"
    shipped.mkdir(parents=True)
    listener = subprocess.Popen(
        [sys.executable, "-c", "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
                               "print(s.getsockname()[1], flush=True); time.sleep(60)"],
        cwd=shipped, stdout=subprocess.PIPE, text=True)
    other = subprocess.Popen(["sleep", "60"])
    try:
        port = int(listener.stdout.readline())
        pidfile, other_pidfile = tmp_path / "app.pid", tmp_path / "other.pid"
        pidfile.write_text(f"{listener.pid}\n")
        other_pidfile.write_text(f"{other.pid}\n")
        assert _scratch(steps.runs_release(str(pidfile), "v1"), tmp_path) == 0
        assert _scratch(steps.runs_release(str(pidfile), "v2"), tmp_path) != 0
        assert _scratch(steps.runs_release(str(other_pidfile), "v1"), tmp_path) != 0
        assert _scratch(steps.listens(str(pidfile), port), tmp_path) == 0
        assert _scratch(steps.listens(str(other_pidfile), port), tmp_path) != 0  # a leftover on the port is not it
    finally:
        listener.kill(), other.kill()
        listener.wait(), other.wait()


def test_healthy_is_a_200_from_health(tmp_path):
    class Health(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_json(self.fake.status if self.path == "/health" else 404, {})

    class HealthServer(LocalServer):
        handler = Health
        status = 200

    with HealthServer() as server:
        assert _scratch(steps.healthy("127.0.0.1", server.port), tmp_path) == 0
        server.status = 503
        assert _scratch(steps.healthy("127.0.0.1", server.port), tmp_path) != 0
    assert _scratch(steps.healthy("127.0.0.1", server.port), tmp_path) != 0  # nothing listens


def test_wait_until_polls_until_the_check_passes(tmp_path):
    flag = tmp_path / "ready"
    later = subprocess.Popen(["sh", "-c", f"sleep 0.5 && touch {flag}"])
    done = subprocess.run(["sh", "-c", steps.wait_until(f"[ -f {flag} ]", 10)], capture_output=True, text=True)
    later.wait()
    assert done.returncode == 0 and done.stdout == ""


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


def test_systemd_units_write_the_pid_file_a_roll_reads(state_root):
    """Where systemd runs (AWS) the processes run in the foreground: their units must still write
    the pid file that a deploy's roll (the release it runs, its socket) and the worker's readiness
    read, in a directory systemd makes at boot (/run is a tmpfs)."""
    stack = Stack.load("onebox")
    ctx = stack.context(stack.hosts[0])
    for unit, service, _ in runtime.app_processes(ctx) + runtime.worker_processes(ctx):
        batch = next(b for b in rollout.batches(stack) if service in b.services)
        exec_start = next(line for line in unit.content.splitlines() if line.startswith("ExecStart="))
        assert exec_start.split()[-2:] in (["--pid", batch.pidfile], ["--pidfile", batch.pidfile]), exec_start
        assert "\nRuntimeDirectory=photostack\nRuntimeDirectoryPreserve=yes\n" in unit.content
        assert batch.pidfile.startswith("/run/photostack/")


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
    # The planned ALB target group of the site (the HTTPS listener's default forward) holds the nginx
    # hosts, and only them: app servers sit behind nginx. (The dashboards' group holds the munin master.)
    (https,) = [r for r in plan.of_type("aws:lb/listener:Listener") if r.inputs["protocol"] == "HTTPS"]
    (site_group,) = [a["targetGroupArn"] for a in https.inputs["defaultActions"] if a["type"] == "forward"]
    site_attachments = [a for a in plan.of_type(ATTACHMENT)
                        if dependency(plan, a, "targetGroupArn").outputs["arn"] == site_group]
    attached = {dependency(plan, a, "targetId").inputs["tags"][TAG_NODE] for a in site_attachments}
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
