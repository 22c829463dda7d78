"""base: accounts, directories, kernel settings, limits and time, on every host."""

from __future__ import annotations

import shlex
from typing import Any

from infra.topology import STANDARD_PORTS
from roles.context import RoleContext
from roles.engine.resources import (
    Command,
    DesiredState,
    Directory,
    File,
    Packages,
    Service,
    SystemUser,
)

SYSCTL_FILE = "/etc/sysctl.d/60-photostack.conf"
EPMD_PORT = 4369  # Erlang's port mapper: RabbitMQ's CLI and peers find the node through it


def desired(ctx: RoleContext) -> DesiredState:
    d = ctx.defaults("base")
    tz = d["base_timezone"]
    # The wide ephemeral range covers service ports (RabbitMQ's 25672, the one-box's): a client
    # socket or a port-0 bind taking one of them keeps its service from starting, so they are reserved.
    settings = {**d["base_sysctl"], "net.ipv4.ip_local_reserved_ports": reserved_ports(listening_ports(ctx))}
    state = DesiredState(
        resources=[
            # install
            Packages(tuple(d["base_packages"])),
            # accounts and directories
            SystemUser(d["base_user"], d["base_home"]),
            Directory("/etc/photostack"),
            Directory(d["base_home"], owner=d["base_user"], group=d["base_user"]),
            Directory("/var/log/photostack", owner=d["base_user"], group=d["base_user"]),
            File("/etc/photostack/stack.env", ctx.template("base", "stack.env.j2")),
            # kernel and limits
            File(SYSCTL_FILE, ctx.template("base", "sysctl.conf.j2", sysctl=settings)),
            # Checked against the live kernel, not the file: the one-box has no systemd-sysctl to
            # apply the file at boot, and the settings must hold before any service binds its port.
            Command("kernel settings", run=f"sysctl -q -p {SYSCTL_FILE}", unless=_kernel_has(settings)),
            File("/etc/security/limits.d/60-photostack.conf", ctx.template("base", "limits.conf.j2")),
            # time
            File("/etc/timezone", f"{tz}\n"),
            Command(
                f"timezone {tz}",
                run=f"ln -sf /usr/share/zoneinfo/{tz} /etc/localtime",
                unless=f'[ "$(readlink /etc/localtime)" = /usr/share/zoneinfo/{tz} ]',
            ),
        ],
    )
    if not ctx.target.one_machine():
        # Clock sync needs CAP_SYS_TIME, which the one-box (a container) does not have;
        # there the host's clock is the container's. A host that is a container (the lab's) skips
        # chrony by its unit's own condition, which counts as done rather than "stopped" each time.
        state.resources += [Packages(("chrony",)), Service.init_script("chrony", unit_conditions=True)]
    return state


def listening_ports(ctx: RoleContext) -> set[int]:
    """Every TCP port a service of this host may listen on: its roles' spans (every port a node of
    the role may take, so a fleet that grows changes nothing here), sshd, RabbitMQ's Erlang ports."""
    roles = ctx.host.roles
    ports = {port for role in roles if role in STANDARD_PORTS for port in ctx.target.port_span(role)}
    ports.add(ctx.host.port)
    if "rabbitmq" in roles:
        rabbitmq = ctx.defaults("rabbitmq")
        ports |= {EPMD_PORT, rabbitmq["rabbitmq_dist_port"], rabbitmq["rabbitmq_management_port"]}
    return ports


def reserved_ports(ports: set[int]) -> str:
    """`ports` as the kernel prints ip_local_reserved_ports: ascending, runs joined as `first-last`."""
    runs: list[list[int]] = []
    for port in sorted(ports):
        if runs and port == runs[-1][1] + 1:
            runs[-1][1] = port
        else:
            runs.append([port, port])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _kernel_has(settings: dict[str, Any]) -> str:
    """A check that the running kernel holds every setting (sysctl prints ranges tab-separated)."""
    return " && ".join(f"[ \"$(sysctl -n {key} | tr '\\t' ' ')\" = {shlex.quote(str(value))} ]"
                       for key, value in settings.items())
