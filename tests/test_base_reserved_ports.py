"""The base role keeps service ports out of the kernel's ephemeral range (ip_local_reserved_ports):
the wide range it sets (10240–65000) covers RabbitMQ's distribution port and the one-box's ports,
and a client socket or a port-0 bind that happened to take one kept that service from starting
(CI: RabbitMQ stopped with `dist_port_already_used, 25672, not_erlang`). The settings are checked
against the live kernel, so a one-box whose kernel lost them (no systemd-sysctl at boot) gets
them back."""

from __future__ import annotations

import subprocess

from infra.config import load_stack_config
from infra.inventory import onebox_hosts
from infra.targets import target_of
from roles.base.role import _kernel_has, listening_ports, reserved_ports
from roles.context import RoleContext, desired_state
from roles.engine.resources import Command, File


def _onebox() -> RoleContext:
    config = load_stack_config("onebox")
    host = onebox_hosts(config)[0]
    return RoleContext(config, "onebox", host, (host,), lambda name: "x")


def test_every_port_a_onebox_service_listens_on_is_reserved() -> None:
    ctx = _onebox()
    target, box = target_of(ctx.config), ctx.config.onebox
    ports = listening_ports(ctx)
    expected = {box.ssh_port, box.http_port, box.pgbouncer_port, box.rabbitmq_port, box.munin_node_port,
                4369, 25672, 15672}
    expected |= {target.port(node.role, node.index) for node in ctx.host.nodes if node.role not in ("worker", "munin_master")}
    assert expected <= ports
    rendered = next(r.content for r in desired_state("base", ctx).resources
                    if isinstance(r, File) and r.path.startswith("/etc/sysctl.d/"))
    assert f"net.ipv4.ip_local_reserved_ports = {reserved_ports(ports)}" in rendered


def test_reserved_ports_are_written_as_the_kernel_prints_them() -> None:
    assert reserved_ports({8002, 4369, 5433, 5435, 5434, 8001, 25672}) == "4369,5433-5435,8001-8002,25672"
    assert reserved_ports(set()) == ""


def test_the_kernel_check_reads_live_values() -> None:
    """The check passes on the value the kernel holds and fails on any other."""
    live = subprocess.run(["sysctl", "-n", "net.ipv4.ip_local_port_range"], capture_output=True, text=True,
                          check=True).stdout.split()
    ctx = _onebox()
    check = next(r for r in desired_state("base", ctx).resources
                 if isinstance(r, Command) and r.name == "kernel settings").unless
    holds = _kernel_has({"net.ipv4.ip_local_port_range": " ".join(live)})
    differs = _kernel_has({"net.ipv4.ip_local_port_range": f"{int(live[0]) + 1} {live[1]}"})
    assert subprocess.run(["sh", "-c", holds]).returncode == 0
    assert subprocess.run(["sh", "-c", differs]).returncode != 0
    assert "ip_local_reserved_ports" in check
