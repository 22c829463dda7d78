"""The ALB stand-in's members follow ELBv2 target registration (lab/lb_targets.py): the commands
decided from HAProxy's servers and the registered targets, and a real HAProxy (Debian's, on
loopback) driven through its admin socket."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lab import fleet, lb
from lab.lb_targets import Follower, Server, Target, changes, runtime, servers
from tests.e2e.conftest import wait_until
from tests.lab_stack.conftest import instance_of, operator_client

BACKEND = "tg_lb_nginx"


def test_a_deregistered_target_goes_to_maintenance_and_comes_back_when_registered_again():
    current = [Server("nginx-0", "10.0.0.5", 80, False), Server("spare-1", "127.0.0.1", 80, True)]
    assert changes(BACKEND, current, []) == [f"set server {BACKEND}/nginx-0 state maint"]
    parked = [Server("nginx-0", "10.0.0.5", 80, True), Server("spare-1", "127.0.0.1", 80, True)]
    assert changes(BACKEND, parked, [Target("nginx-0", "10.0.0.5", 80)]) == [f"set server {BACKEND}/nginx-0 state ready"]
    assert changes(BACKEND, current, [Target("nginx-0", "10.0.0.5", 80)]) == []


def test_a_replacement_takes_its_nodes_server_and_a_new_node_a_spare():
    current = [Server("nginx-0", "10.0.0.5", 80, False), Server("spare-1", "127.0.0.1", 80, True)]
    wanted = [Target("nginx-0", "10.0.0.9", 80), Target("nginx-1", "10.0.0.7", 80)]
    assert changes(BACKEND, current, wanted) == [
        f"set server {BACKEND}/nginx-0 state maint",
        f"set server {BACKEND}/nginx-0 addr 10.0.0.9 port 80", f"set server {BACKEND}/nginx-0 state ready",
        f"set server {BACKEND}/spare-1 addr 10.0.0.7 port 80", f"set server {BACKEND}/spare-1 state ready"]


def test_more_targets_than_slots_take_what_there_is():
    current = [Server("spare-1", "127.0.0.1", 80, True)]
    wanted = [Target("a", "10.0.0.1", 80), Target("b", "10.0.0.2", 80)]
    assert len([c for c in changes(BACKEND, current, wanted) if c.endswith("state ready")]) == 1


class Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_OPTIONS = do_GET  # HAProxy's `option httpchk` asks OPTIONS /  # noqa: N815

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionResetError:  # a health check closing its connection at once
            pass

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[tuple[Path, list[int]]]:
    """Debian's HAProxy with one backend as lab/lb.py writes it (a planned member, two spares) and
    two healthy HTTP servers on loopback; yields its admin socket and their ports."""
    if not shutil.which("haproxy"):
        pytest.skip("haproxy is not installed (make test installs it)")
    web = [ThreadingHTTPServer(("127.0.0.1", 0), Healthy) for _ in range(2)]
    for server in web:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ports = [server.server_address[1] for server in web]
    admin = tmp_path / "admin.sock"
    (tmp_path / "haproxy.cfg").write_text("\n".join([
        "global", f"    stats socket {admin} mode 600 level admin",
        "defaults", "    mode http", "    timeout connect 1s", "    timeout client 5s", "    timeout server 5s",
        f"backend {BACKEND}", "    option httpchk", "    default-server check inter 200ms rise 1 fall 1",
        f"    server nginx-0 127.0.0.1:{ports[0]}",
        "    server spare-1 127.0.0.1:80 disabled", "    server spare-2 127.0.0.1:80 disabled", ""]))
    process = subprocess.Popen(["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(admin.exists, timeout=10)
        yield admin, ports
    finally:
        process.kill()
        process.wait()
        for server in web:
            server.shutdown()


def _status(admin: Path) -> dict[str, str]:
    rows = [line.split(",") for line in runtime(admin, "show stat").splitlines() if line.startswith(BACKEND + ",")]
    return {row[1]: row[17].split()[0] for row in rows if row[1] != "BACKEND"}


def test_haproxy_follows_registration_at_runtime(haproxy):
    admin, ports = haproxy
    registered = {BACKEND: [Target("nginx-0", "127.0.0.1", ports[0])]}
    follower = Follower(lambda: registered, admin, log=lambda _line: None)
    assert follower.follow() == []  # the plan's member, registered: nothing to change
    assert wait_until(lambda: _status(admin)["nginx-0"] == "UP", timeout=30), _status(admin)

    registered[BACKEND] = []  # deregistered
    follower.follow()
    assert _status(admin)["nginx-0"] == "MAINT"

    registered[BACKEND] = [Target("nginx-0", "127.0.0.1", ports[0]), Target("nginx-1", "127.0.0.1", ports[1])]
    follower.follow()  # registered again, and a target the plan did not attach
    assert wait_until(lambda: _status(admin).get("nginx-0") == "UP" and _status(admin).get("spare-1") == "UP",
                      timeout=30), _status(admin)
    held = {s.name: (s.address, s.port) for s in servers(admin, BACKEND)}
    assert held["spare-1"] == ("127.0.0.1", ports[1])
    assert follower.follow() == []  # in step: nothing more to do


@pytest.mark.lab
def test_the_lab_load_balancer_follows_deregistration_and_registration_of_the_nginx_host(lab_green, lab_client):
    """Deregistered through the ELBv2 API, the nginx host (the ALB's target) gets no new requests
    (HAProxy: MAINT, the ALB answers 503 with no target); registered again, it is back."""
    elbv2 = operator_client("elbv2")
    (target,) = [i.node for i in lab_green.plan.instances if i.role == "nginx"]
    default = lb.backend_name(fleet.load_balancer(lab_green.plan, lab_green.config).default_group)
    (group,) = [g["TargetGroupArn"] for g in elbv2.describe_target_groups()["TargetGroups"]
                if lb.backend_name(g["TargetGroupName"]) == default]
    member = {"Id": instance_of(target), "Port": 80}
    client = lab_client()
    assert wait_until(lambda: lb.server_states().get(target) == "UP", timeout=60), lb.server_states()
    elbv2.deregister_targets(TargetGroupArn=group, Targets=[member])
    try:
        assert wait_until(lambda: lb.server_states().get(target) == "MAINT", timeout=30), lb.server_states()
        assert client.request("GET", "/health")[0] == 503
    finally:
        elbv2.register_targets(TargetGroupArn=group, Targets=[member])
    assert wait_until(lambda: lb.server_states().get(target) == "UP", timeout=60), lb.server_states()
    assert client.request("GET", "/health")[0] == 200
