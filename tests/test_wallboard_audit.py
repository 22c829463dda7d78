"""The audit trail where the dashboard reads it: the monitoring host copies the stack's recent
trail (the one-box's state dir, or CloudWatch Logs on AWS) beside the wallboard's page markers,
and its nginx serves it behind the same login (the wallboard page lists it: tests/test_app_wallboard.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import requests

from monitoring.wallboard_markers import AUDIT_FILE, AUDIT_URL, PAGE_FILE
from ops import audit
from roles.engine.resources import Service
from tests.app_services import _kill_group, free_ports, start_nginx, wait_port
from tests.test_dashboard_password import SITE, host_files, records  # noqa: F401 — records: SSM for the hosts

REPO = Path(__file__).resolve().parent.parent


def _publisher(stack: str) -> Service:
    """The audit publisher the munin_master role runs on the stack's monitoring host."""
    from infra.config import load_stack_config
    from infra.inventory import Host
    from infra.topology import nodes
    from roles.context import RoleContext
    from roles.converge import host_state

    config = load_stack_config(stack)
    hosts = tuple(Host(node.name, f"10.213.0.{i + 10}", 22, "admin", (node,), "admin@10.213.0.5:22")
                  for i, node in enumerate(nodes(config)))
    host = next(h for h in hosts if h.nodes[0].role == "munin_master")
    ctx = RoleContext(config, stack, host, hosts, lambda name: f"secret-{name}")
    (found,) = [r for r in host_state(ctx, {"munin_master"}).resources
                if isinstance(r, Service) and r.name == "photostack-audit-publisher"]
    return found


def test_the_monitoring_host_publishes_the_trail_and_its_nginx_serves_it_after_a_command(tmp_path):
    assert f"-m ops.audit --stack prod --publish {AUDIT_FILE}" in _publisher("prod").start
    # An operator's changing command, for real, on a one-box whose state dir is the test's.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTOSTACK_", "AWS_"))}
    env.update(PHOTOSTACK_STATE_DIR=str(tmp_path / "state"), PYTHONPATH=str(REPO), USER="alice")
    done = subprocess.run([sys.executable, "-m", "ops", "secret", "set", "pingdomToken"], cwd=REPO, env=env,
                          input="token-value\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # The publisher's round, as the role runs it (here once, into the directory nginx serves).
    served = tmp_path / "wallboard"
    served.mkdir()
    published = subprocess.run([sys.executable, "-P", "-m", "ops.audit", "--stack", "onebox", "--publish",
                                str(served / "audit.json"), "--once"], cwd="/", env=env, capture_output=True,
                               text=True, timeout=60)
    assert published.returncode == 0, published.stderr
    # The monitoring host's dashboard site (prod's: the operator login is the load balancer's).
    (port,) = free_ports(1)
    site = host_files("prod", "munin_master")[SITE].content
    assert f"location = {AUDIT_URL} {{" in site and f"alias {AUDIT_FILE};" in site
    site = (site.replace("listen 80 ", f"listen 127.0.0.1:{port} ").replace(AUDIT_FILE, str(served / "audit.json"))
            .replace(PAGE_FILE, str(served / "page-markers.json")).replace("/var/cache/munin/www", str(tmp_path)))
    nginx = start_nginx(tmp_path, site)
    try:
        wait_port(port, nginx, 10, "nginx")
        answer = requests.get(f"http://127.0.0.1:{port}{AUDIT_URL}", timeout=5)
    finally:
        os.killpg(nginx.pid, signal.SIGCONT)
        _kill_group(nginx)
    assert answer.status_code == 200, answer.text
    [entry] = answer.json()
    assert (entry["who"], entry["command"], entry["outcome"]) == ("alice", "secret set pingdomToken", "ok")
    assert "token-value" not in answer.text


def test_on_aws_the_publisher_reads_the_shared_trail_newest_first(moto_account, tmp_path, monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_ENDPOINT_URL": moto_account, "AWS_CONFIG_FILE": str(tmp_path / "none"),
                       "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(key, value)
    trail = audit.LogsTrail(boto3.client("logs", region_name="us-east-1"), "prod")
    now = time.time()
    trail.write(audit.Entry(now - 60, "bob", "bobs-laptop", "deploy v8", "ok"))
    trail.write(audit.Entry(now, "alice", "laptop", "failover --shard 2", "failed: shard2r1: promote: timed out"))
    path = tmp_path / "audit.json"
    assert audit.main(["--stack", "prod", "--publish", str(path), "--once"]) == 0
    assert [(e["who"], e["command"]) for e in json.loads(path.read_text())] == [
        ("alice", "failover --shard 2"), ("bob", "deploy v8")]
    assert path.stat().st_mode & 0o777 == 0o644  # nginx (www-data) reads it


def test_the_monitoring_host_alone_may_read_the_trail():
    from tests._infra_plans import plan_of

    plan = plan_of("prod")
    readers = {}
    for policy in plan.of_type("aws:iam/rolePolicy:RolePolicy"):
        for statement in json.loads(policy.inputs["policy"])["Statement"]:
            if any(action.startswith("logs:") for action in statement["Action"]):
                readers[policy.name] = (statement["Action"], statement["Resource"])
    assert readers == {"fleet-munin_master-silences": (
        ["logs:FilterLogEvents"], ["arn:aws:logs:us-east-1:123456789012:log-group:/photostack/prod/ops-audit:*"])}
