"""What users do with `ops` and rely on, as they do it: the CLI in a subprocess.

Scratch state dirs for what must not touch this machine (secrets from stdin, an unknown host);
the real one-box for the rest (runbook commands as written, `ops down` then `ops up`, the URLs
and the demo login `ops up` prints)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from infra.config import load_stack_config
from infra.inventory import Host
from infra.topology import nodes
from infra.alerts import Alert, trigger_event
from monitoring.agents.health_watcher import PLUGIN as HEALTH_PLUGIN
from roles.context import RoleContext
from roles.munin_node.plugins import host_plugins, limits
from tests._infra_plans import plan_of
from tests.drills.appclient import ApiClient
from tests.fakes.ssm_server import SsmServer

REPO = Path(__file__).resolve().parent.parent
RUNBOOKS = REPO / "runbooks"


def ops(*args: str, state: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"PHOTOSTACK_STATE_DIR": str(state)} if state else {})}
    return subprocess.run([sys.executable, "-m", "ops", *args], input=stdin, capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=900)


# --- no one-box -------------------------------------------------------------------------------

def test_secret_set_reads_stdin_and_stores_it_owner_only(tmp_path):
    done = ops("secret", "set", "pagerdutyRoutingKey", state=tmp_path, stdin="R0UTING-key-from-stdin\n")
    assert done.returncode == 0, done.stderr
    assert "R0UTING" not in done.stdout + done.stderr
    store = tmp_path / "onebox" / "secrets.json"
    assert json.loads(store.read_text())["pagerdutyRoutingKey"] == "R0UTING-key-from-stdin"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600


@pytest.mark.parametrize(("name", "stdin", "line"), [
    ("pagerdutyRoutingKey", "", "photostack:pagerdutyRoutingKey: empty value"),
    ("pagerdutyRoutingKey", "   \n", "photostack:pagerdutyRoutingKey: empty value"),
    ("pagerdutyRoutingKeey", "x\n", "photostack:pagerdutyRoutingKeey: unknown secret (known: "),
])
def test_secret_set_refuses_bad_input_with_one_line_and_stores_nothing(tmp_path, name, stdin, line):
    done = ops("secret", "set", name, state=tmp_path, stdin=stdin)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(line), done.stderr
    assert not (tmp_path / "onebox" / "secrets.json").exists()


def test_converge_an_unknown_host_is_one_line_and_starts_nothing(tmp_path):
    done = ops("converge", "--host", "ghost", state=tmp_path)
    assert (done.returncode, done.stderr) == (2, "--host ghost: no such host in stack onebox\n")
    assert not (tmp_path / "onebox" / "ssh").exists()  # the one-box sshd was not prepared


def _hosts(stack: str) -> tuple[Host, ...]:
    config = load_stack_config(stack)
    if config.target == "onebox":
        from infra.inventory import onebox_hosts

        return tuple(onebox_hosts(config))
    return tuple(Host(n.name, f"10.0.0.{i + 4}", 22, "ubuntu", (n,)) for i, n in enumerate(nodes(config)))


def _pages(stack: str) -> list[str]:
    """The runbook link of every page the stack can send: each limit of each Munin plugin on each
    host, the health watcher's per node, and the load balancer's CloudWatch alarm (AWS)."""
    config = load_stack_config(stack)
    hosts = _hosts(stack)
    base = config.alerting.runbook_base_url
    links = []
    for key in config.monitoring.limits:  # every limit set, standard Munin plugins (df …) too
        plugin, field = key.split(".", 1)
        links.append(trigger_event(Alert(stack, "any", plugin, field, "warning", "1"), base, config.environment)
                     ["payload"]["custom_details"]["runbook"])
    for host in hosts:
        ctx = RoleContext(config, stack, host, hosts, secret=lambda name: "unused")
        for plugin in host_plugins(ctx):
            for field, level, _ in limits(config, plugin.kind):
                alert = Alert(stack, host.name, plugin.name, field, "critical" if level == "critical" else "warning", "1")
                links.append(trigger_event(alert, base, config.environment)["payload"]["custom_details"]["runbook"])
        for node in (n for n in host.nodes if n.role in ("nginx", "app")):
            alert = Alert(stack, host.name, HEALTH_PLUGIN, node.name, "critical", "down")
            links.append(trigger_event(alert, base, config.environment)["payload"]["custom_details"]["runbook"])
    if config.target == "aws":
        for alarm in plan_of(stack).of_type("aws:cloudwatch/metricAlarm:MetricAlarm"):
            links += re.findall(re.escape(base.rstrip("/")) + r"/[\w.-]+", alarm.inputs.get("alarmDescription", ""))
    return [link.removeprefix(base.rstrip("/") + "/") for link in links]


@pytest.mark.parametrize("stack", ["onebox", "prod"])
def test_every_page_links_a_runbook_that_exists(stack, monkeypatch):
    parameters = {r.inputs["name"]: (r.inputs["type"], r.inputs.get("insecureValue", "unused"))
                  for r in plan_of("prod").of_type("aws:ssm/parameter:Parameter")}
    with SsmServer("us-east-1", parameters) as ssm:  # prod's records (which postgres member is primary)
        for key, value in {"AWS_ENDPOINT_URL_SSM": ssm.url, "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            monkeypatch.setenv(key, value)
        pages = _pages(stack)
    assert len(set(pages)) >= 6  # plugins of every kind page, not only one
    missing = sorted({page for page in pages if not (RUNBOOKS / page).is_file()})
    assert missing == [], f"pages link runbooks that do not exist: {missing}"


# --- on the one-box ---------------------------------------------------------------------------

@pytest.mark.onebox
def test_rebuild_replica_member_as_the_runbooks_write_it(onebox):
    # replication_lag_high.md: `ops rebuild-replica --shard N --member shard<n>r<k>`
    from infra.shardstore import stored_primaries

    # The replica is shard1r1 unless an earlier failover promoted it (the box keeps its roles).
    replica = "shard1r1" if stored_primaries(onebox.config, onebox.name).of(1).primary == 0 else "shard1"
    wrong = ops("rebuild-replica", "--shard", "1", "--member", "shard1r7")
    assert wrong.returncode == 2 and f"--member shard1r7: not a replica of shard 1 (replicas: {replica})" in wrong.stderr
    done = ops("rebuild-replica", "--shard", "1", "--member", replica)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"wait until {replica} streams" in done.stdout and "back in service" in done.stdout
    status = ops("status")
    assert re.search(rf"│ 1 +│ {replica} +│ replica +│ replica", status.stdout), status.stdout
    check = ops("converge", "--check")  # the command left every role in its desired state
    assert check.returncode == 0 and "changed=0 failed=0" in check.stdout, check.stdout + check.stderr


@pytest.mark.onebox
def test_down_then_up_keeps_data_and_prints_urls_that_answer_with_the_demo_login(onebox):
    box = onebox.config.onebox
    user = ApiClient(box.http_port).sign_up("keeps")
    status, photo = user.post_photo("survives ops down")
    assert status == 201, photo

    down = ops("down")
    assert down.returncode == 0, down.stdout + down.stderr
    with pytest.raises(OSError):  # really down
        urllib.request.urlopen(f"http://{box.address}:{box.http_port}/health", timeout=5)
    up = ops("up")
    assert up.returncode == 0, up.stdout + up.stderr

    urls = re.findall(r"http://\S+", up.stdout)
    assert urls == [f"http://{box.address}:{box.http_port}/", f"http://{box.address}:{box.http_port}/health",
                    f"http://{box.address}:{box.http_port}/munin/", f"http://{box.address}:{box.http_port}/wallboard/"]
    for url in urls:
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200, url
    # The user, the photo and its file survived.
    assert user.log_in() == 200
    status, again = user.call("GET", f"/api/photos/{photo['id']}")
    assert status == 200 and again["caption"] == "survives ops down"
    # The README's demo login.
    demo = ApiClient(box.http_port)
    demo.username, demo.password = "alice", "photostack-demo"
    assert demo.log_in() == 200
    assert demo.call("GET", "/api/users/bob")[0] == 200
