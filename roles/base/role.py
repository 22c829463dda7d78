"""base: accounts, directories, kernel settings, limits and time, on every host."""

from __future__ import annotations

from roles.context import RoleContext
from roles.engine.resources import (
    Command,
    DesiredState,
    Directory,
    File,
    Handler,
    Packages,
    Service,
    SystemUser,
)

SYSCTL_FILE = "/etc/sysctl.d/60-photostack.conf"


def desired(ctx: RoleContext) -> DesiredState:
    d = ctx.defaults("base")
    tz = d["base_timezone"]
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
            File(SYSCTL_FILE, ctx.template("base", "sysctl.conf.j2"), notify=("apply sysctl",)),
            File("/etc/security/limits.d/60-photostack.conf", ctx.template("base", "limits.conf.j2")),
            # time
            File("/etc/timezone", f"{tz}\n"),
            Command(
                f"timezone {tz}",
                run=f"ln -sf /usr/share/zoneinfo/{tz} /etc/localtime",
                unless=f'[ "$(readlink /etc/localtime)" = /usr/share/zoneinfo/{tz} ]',
            ),
        ],
        handlers=[Handler("apply sysctl", f"sysctl -q -p {SYSCTL_FILE}")],
    )
    if not ctx.target.one_machine():
        # Clock sync needs CAP_SYS_TIME, which the one-box (a container) does not have;
        # there the host's clock is the container's. A host that is a container (the lab's) skips
        # chrony by its unit's own condition, which counts as done rather than "stopped" each time.
        state.resources += [Packages(("chrony",)), Service.init_script("chrony", unit_conditions=True)]
    return state
