"""The load balancer stand-in's configuration, read from the lab plan (lab/lb.py); HAProxy checks it.

No lab is booted here: the plan is made offline and `haproxy -c` validates the generated config.
"""

from __future__ import annotations

import ipaddress
import subprocess

import pytest

from infra.config import load_stack_config
from infra.load_balancer import HEALTH_CHECK
from lab import fleet, lb
from lab.planned_instances import lab_plan

STACK = "lab"


@pytest.fixture(scope="module")
def planned():
    config = load_stack_config(STACK)
    plan = lab_plan(config, STACK)
    return plan, fleet.load_balancer(plan, config)


def test_health_checks_and_members_are_the_plans(planned):
    plan, balancer = planned
    nginx = next(g for g in balancer.groups if g.name == balancer.default_group)
    assert nginx.health == lb.HealthCheck(HEALTH_CHECK["path"], HEALTH_CHECK["port"], HEALTH_CHECK["matcher"],
                                          HEALTH_CHECK["interval"], HEALTH_CHECK["timeout"],
                                          HEALTH_CHECK["healthy_threshold"], HEALTH_CHECK["unhealthy_threshold"])
    assert [(node, address) for node, address, _ in nginx.members] == [
        (i.node, i.private_ip) for i in plan.instances if i.role == "nginx"]
    assert ipaddress.ip_address(balancer.address) in plan.network
    assert balancer.address not in {i.private_ip for i in plan.instances} | {str(next(plan.network.hosts()))}


def test_haproxy_accepts_the_config_with_the_plans_checks_and_rules(planned, tmp_path, monkeypatch):
    monkeypatch.setenv("PHOTOSTACK_LAB_CACHE", str(tmp_path / "cache"))
    _, balancer = planned
    certificate = lb.issue_certificate(tmp_path, [balancer.domain], [balancer.address])
    text = lb.config(balancer, certificate, tmp_path / "admin.sock")
    (tmp_path / "haproxy.cfg").write_text(text)
    checked = subprocess.run(["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    check = HEALTH_CHECK
    assert (f"default-server check inter {check['interval']}s rise {check['healthy_threshold']} "
            f"fall {check['unhealthy_threshold']}") in text
    assert f"uri {check['path']} " in text and f"timeout check {check['timeout']}s" in text
    assert "http-request set-header X-Forwarded-Proto https" in text
    # The dashboards' fixed 403 (no operator login in the lab stack) comes before the default forward.
    assert text.index("acl rule10 path -m reg ^/munin$|^/munin/.*$") < text.index("default_backend")
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(lb.ca_certificate()), str(tmp_path / "server.crt")],
                              capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr


def test_alb_matchers_and_path_patterns_translate():
    assert lb._status_match("200") == "^(200)$"
    assert lb._status_match("200,202-203") == "^(200|202|203)$"
    assert lb._path_regex(("/a/*", "/b?")) == "^/a/.*$|^/b.$"
