"""nginx in front of the app (issue 10), the shipped site template served by a real nginx:
the load balancer's X-Forwarded-Proto and client address are forwarded only when the peer is
the load balancer (on AWS: the VPC; the one-box has none and forwards its own `http`); the
browser's Host keeps its port (the app's Origin check compares them); `/media/` is nosniff."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.config import load_stack_config
from infra.inventory import onebox_hosts
from roles.context import RoleContext, desired_state
from roles.engine.resources import File
from roles.nginx.role import load_balancer_cidrs
from tests.fakes.base import JsonHandler, LocalServer
from tests.app_services import _kill_group, free_ports, start_nginx, wait_port

LB = "127.0.0.1"  # stands in for the load balancer; a client from 127.0.0.2 is anyone else
SITE = "/etc/nginx/conf.d/photostack.conf"


class _Echo(JsonHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self.send_json(200, {k.lower(): v for k, v in self.headers.items()})


class Echo(LocalServer):
    """An 'app server' answering with the request headers it received."""

    handler = _Echo


def _context(target: str = "onebox") -> RoleContext:
    config = load_stack_config("onebox")
    if target != "onebox":
        config = config.model_copy(update={"target": target})
    hosts = tuple(onebox_hosts(load_stack_config("onebox")))
    return RoleContext(config, "onebox", hosts[0], hosts, lambda name: f"secret-{name}")


@dataclass
class Nginx:
    port: int
    media: Path


@pytest.fixture
def nginx(tmp_path, state_root) -> Iterator[Nginx]:
    """A real nginx with the shipped site template, the load balancer at 127.0.0.1/32."""
    with Echo() as echo:
        port, media = free_ports(1)[0], tmp_path / "media"
        media.mkdir()
        site = _context().template("nginx", "site.conf.j2", listen=f"127.0.0.1:{port}",
                                   app_servers=[(f"127.0.0.1:{echo.port}", False)], media_root=str(media),
                                   munin_htmldir=str(tmp_path), load_balancer_cidrs=[f"{LB}/32"], inflight_limit=16,
                                   published=[("/munin/page-markers.json", str(tmp_path / "page-markers.json"))],
                                   dashboard_realm=None, dashboard_password_file="")
        proc = start_nginx(tmp_path, site)
        try:
            wait_port(port, proc, 10, "nginx")
            yield Nginx(port, media)
        finally:
            _kill_group(proc)


def _get(nginx: Nginx, path: str, source: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10, source_address=(source, 0))
    conn.request("GET", path, headers=headers)
    return conn.getresponse()


def _forwarded(nginx: Nginx, source: str, headers: dict[str, str]) -> dict[str, str]:
    return json.loads(_get(nginx, "/api/me", source, headers).read())


def test_the_load_balancers_proto_and_client_address_are_forwarded(nginx):
    seen = _forwarded(nginx, LB, {"Host": "photos.example", "X-Forwarded-Proto": "https",
                                  "X-Forwarded-For": "198.51.100.1, 203.0.113.9"})
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-real-ip"] == "203.0.113.9"  # the address the load balancer appended, not a claimed one
    assert seen["host"] == "photos.example"


def test_anyone_else_gets_what_nginx_saw(nginx):
    seen = _forwarded(nginx, "127.0.0.2", {"Host": f"127.0.0.1:{nginx.port}", "X-Forwarded-Proto": "https",
                                           "X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"})
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-real-ip"] == "127.0.0.2"
    assert seen["host"] == f"127.0.0.1:{nginx.port}"  # with the port, as the browser's Origin has it


def test_media_is_served_nosniff(nginx):
    (nginx.media / "p.gif").write_bytes(b"GIF89a<html><script>alert(1)</script>")
    answer = _get(nginx, "/media/p.gif", LB, {"Host": "photos.example"})
    assert answer.status == 200 and answer.getheader("Content-Type") == "image/gif"
    assert answer.getheader("X-Content-Type-Options") == "nosniff"
    assert "sandbox" in answer.getheader("Content-Security-Policy")


def _site(ctx: RoleContext) -> str:
    return next(r.content for r in desired_state("nginx", ctx).resources if isinstance(r, File) and r.path == SITE)


def test_only_aws_trusts_a_load_balancer(state_root):
    site = _site(_context("onebox"))
    assert "set_real_ip_from" not in site and "X-Forwarded-Proto $photostack_proto;" in site
    assert load_balancer_cidrs(_context("onebox")) == []
    aws = _context("aws")
    assert load_balancer_cidrs(aws) == [aws.config.vpc_cidr]
