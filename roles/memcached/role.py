"""memcached: cache instances on the host's private address. Install → one unit per instance →
service (the package's default instance stays off)."""

from __future__ import annotations

import shlex

from roles.context import RoleContext
from roles.engine.resources import (
    DesiredState,
    Directory,
    File,
    Handler,
    Packages,
    Service,
    package_daemon_held,
)

RELOAD_UNITS = "reload systemd units"


def memcached_argv(address: str, port: int, memory_mb: int, connections: int, threads: int) -> list[str]:
    """The memcached command line of one instance (TCP only, no UDP: UDP amplification)."""
    return [
        "/usr/bin/memcached", "-u", "memcache", "-l", address, "-p", str(port), "-U", "0",
        "-m", str(memory_mb), "-c", str(connections), "-t", str(threads),
    ]


def desired(ctx: RoleContext) -> DesiredState:
    d = ctx.defaults("memcached")
    first_unit = f"/etc/systemd/system/{_unit(ctx.port(ctx.host.nodes_of('memcached')[0]))}"
    state = DesiredState(
        resources=[
            Packages(("memcached",)),
            # The package's own instance (/etc/memcached.conf, 11211) would collide with ours.
            package_daemon_held("memcached", first_unit, keep_off=True),
            # memcached writes its pid file after dropping to the memcache user.
            Directory("/run/memcached", owner="memcache", group="memcache"),
        ],
        handlers=[Handler(RELOAD_UNITS, "if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi")],
    )
    for node in ctx.host.nodes_of("memcached"):
        port = ctx.port(node)
        argv = memcached_argv(
            ctx.bind_address, port, ctx.config.memcached.memory_mb, d["memcached_max_connections"], d["memcached_threads"]
        )
        command = shlex.join(argv)
        unit = _unit(port)
        pidfile = f"/run/memcached/photostack-{port}.pid"
        restart = f"restart memcached {port}"
        service = Service.daemon(f"memcached {port}", unit, f"{command} -d -P {pidfile}", pidfile)
        state.resources += [
            File(
                f"/etc/systemd/system/{unit}",
                ctx.template("memcached", "memcached.service.j2", port=port, command=command),
                notify=(RELOAD_UNITS, restart),
            ),
            service,
        ]
        state.handlers.append(Handler(restart, restarts=(service,)))
    return state


def _unit(port: int) -> str:
    return f"photostack-memcached-{port}.service"
