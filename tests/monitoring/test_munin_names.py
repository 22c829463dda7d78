"""Munin's names for the hosts of an AWS-shaped stack: munin.conf's sections and each munin-node's
host_name agree, and are names Munin accepts (it refuses `munin_master-0` and then updates nothing,
which left the lab's and AWS's Munin pages empty)."""

from __future__ import annotations

import re

import pytest

from infra.config import load_stack_config
from infra.inventory import Host
from infra.topology import nodes
from roles.context import RoleContext
from roles.converge import host_state
from roles.engine.resources import File
from tests.fakes.ssm_server import SsmServer
from tests._infra_plans import planned_parameters, use_ssm

# Munin::Common::Config: a host name is letters, digits, `-` and `.` (a DNS name).
MUNIN_HOST_NAME = re.compile(r"^[A-Za-z0-9.-]+$")


@pytest.fixture
def lab_records(monkeypatch):
    with SsmServer("us-east-1", planned_parameters("lab")) as server:
        use_ssm(monkeypatch, server.url)
        yield


def test_munin_conf_sections_are_the_nodes_host_names_and_valid(lab_records):
    config = load_stack_config("lab")
    hosts = tuple(Host(node.name, f"10.213.0.{i + 10}", 22, "admin", (node,), "")
                  for i, node in enumerate(nodes(config)))
    assert any("_" in h.name for h in hosts)  # the case Munin refuses

    def files(host: Host, role: str) -> dict[str, str]:
        ctx = RoleContext(config, "lab", host, hosts, lambda name: f"secret-{name}")
        return {r.path: r.content for r in host_state(ctx, {role}).resources if isinstance(r, File)}

    (master,) = [h for h in hosts if "munin_master" in h.roles]
    sections = re.findall(r"^\[lab;([^\]]+)\]$", files(master, "munin_master")["/etc/munin/munin.conf"], re.M)
    node_names = [re.search(r"^host_name (\S+)$", files(h, "munin_node")["/etc/munin/munin-node.conf"], re.M).group(1)
                  for h in hosts]
    assert sorted(sections) == sorted(node_names)
    assert all(MUNIN_HOST_NAME.match(name) for name in sections), sections
