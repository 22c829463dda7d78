"""The dashboards' password login (monitoring.dashboardPassword, the lab's): the plan forwards
/munin/ and /wallboard/ to nginx, which asks for the password; a real nginx with the rendered
site and password file refuses a missing or wrong password and lets the right one in."""

from __future__ import annotations

import os
import signal

import pytest
import requests

from infra.config import load_stack_config
from infra.inventory import Host
from infra.offline_plan import is_secret
from infra.topology import nodes
from roles.context import RoleContext
from roles.converge import host_state
from roles.engine.resources import Absent, File
from roles.nginx.dashboard_login import PASSWORD_FILE
from tests._infra_plans import plan_of, planned_parameters, use_ssm
from tests.app_services import _kill_group, free_ports, start_nginx, wait_port
from tests.fakes.ssm_server import SsmServer
from tests.test_infra_program import _readable_parameters

PASSWORD = "correct horse battery staple, 'quoted' $(not run)"
SITE = "/etc/nginx/conf.d/photostack-munin.conf"


@pytest.fixture(autouse=True)
def records(monkeypatch):
    """The records (and secrets) AWS hosts read from SSM, as the lab and prod plans write them."""
    with SsmServer("us-east-1", planned_parameters("lab", "prod")) as server:
        use_ssm(monkeypatch, server.url)
        yield


def host_files(stack: str, role: str, password: str = PASSWORD) -> dict[str, File | Absent]:
    """The files a host of `role` converges, by path (secrets stood in)."""
    config = load_stack_config(stack)
    hosts = tuple(Host(node.name, f"10.213.0.{i + 10}", 22, "admin", (node,), "admin@10.213.0.5:22")
                  for i, node in enumerate(nodes(config)))
    host = next(h for h in hosts if h.nodes[0].role == role)
    secret = {"dashboardPassword": password}.get
    ctx = RoleContext(config, stack, host, hosts, lambda name: secret(name) or f"secret-{name}")
    return {r.path: r for r in host_state(ctx, {role}).resources if isinstance(r, (File, Absent))}


def test_the_lab_plan_forwards_the_dashboards_to_nginx_which_alone_reads_the_password():
    plan = plan_of("lab")
    for rule in plan.of_type("aws:lb/listenerRule:ListenerRule"):
        (action,) = rule.inputs["actions"]
        assert action["type"] == "forward", rule.name
        assert rule.inputs["tags"]["photostack:login"] == "nginx-password"
    (password,) = [r for r in plan.of_type("aws:ssm/parameter:Parameter")
                   if r.inputs["name"] == "/photostack/lab/dashboardPassword"]
    assert password.inputs["type"] == "SecureString" and is_secret(password.inputs["value"])
    arn = password.outputs["arn"]
    readers = {role for role in ("nginx", "munin_master", "app", "worker", "postgres") if arn in _readable_parameters(plan, role)}
    assert readers == {"nginx", "munin_master"}


def test_without_a_password_login_no_password_file_and_no_wallboard_location():
    assert load_stack_config("prod").monitoring.dashboard_password is None
    files = host_files("prod", "nginx")
    assert isinstance(files[PASSWORD_FILE], Absent)
    assert "auth_basic" not in files["/etc/nginx/conf.d/photostack.conf"].content


def test_the_nginx_tier_asks_for_the_login_on_the_wallboard_only():
    files = host_files("lab", "nginx")
    site = files["/etc/nginx/conf.d/photostack.conf"].content
    wallboard = site[site.index("location /wallboard/ {"):]
    wallboard = wallboard[:wallboard.index("\n    }\n")]
    assert f"auth_basic_user_file {PASSWORD_FILE};" in wallboard and "proxy_pass http://photostack_app;" in wallboard
    assert site.count("auth_basic ") == 1  # the site itself stays open
    login = files[PASSWORD_FILE]
    assert (login.owner, login.group, login.mode, login.sensitive) == ("root", "www-data", 0o640, True)
    assert PASSWORD not in login.content and login.content.startswith("oncall:{SSHA}")
    # The same password renders the same file (a converge finds nothing to do); another does not.
    assert host_files("lab", "nginx")[PASSWORD_FILE].content == login.content
    assert host_files("lab", "nginx", PASSWORD + "!")[PASSWORD_FILE].content != login.content


@pytest.fixture
def monitoring_nginx(tmp_path):
    """The lab monitoring host's dashboard site and password file, served by a throwaway nginx."""
    files = host_files("lab", "munin_master")
    (port,) = free_ports(1)
    html = tmp_path / "www"
    html.mkdir()
    (html / "index.html").write_text("munin overview\n")
    (tmp_path / "login").write_text(files[PASSWORD_FILE].content)
    site = (files[SITE].content.replace("listen 80 ", f"listen 127.0.0.1:{port} ")
            .replace(PASSWORD_FILE, str(tmp_path / "login")).replace("/var/cache/munin/www", str(html)))
    assert f"listen 127.0.0.1:{port} " in site and str(html) in site
    nginx = start_nginx(tmp_path, site)
    try:
        wait_port(port, nginx, 10, "nginx")
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(nginx.pid, signal.SIGCONT)
        _kill_group(nginx)


def test_real_nginx_asks_for_the_dashboard_password(monitoring_nginx):
    base = monitoring_nginx
    assert requests.get(f"{base}/health", timeout=5).status_code == 200  # the load balancer's check: no login
    refused = requests.get(f"{base}/munin/", timeout=5)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="photostack dashboards"'
    assert requests.get(f"{base}/munin/", auth=("oncall", PASSWORD + "x"), timeout=5).status_code == 401
    assert requests.get(f"{base}/munin/", auth=("root", PASSWORD), timeout=5).status_code == 401
    answer = requests.get(f"{base}/munin/", auth=("oncall", PASSWORD), timeout=5)
    assert (answer.status_code, answer.text) == (200, "munin overview\n")
    assert requests.get(f"{base}/munin/page-markers.json", timeout=5).status_code == 401
