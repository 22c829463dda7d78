"""rabbitmq: the Celery broker. Install → configure (env, config, cluster cookie) → service →
vhost, app user, no guest (→ mirroring policy when clustered)."""

from __future__ import annotations

import hashlib
import shlex

from roles.engine.context import RoleContext
from roles.engine.resources import Command, DesiredState, File, Handler, Packages, Service, package_daemon_held

RESTART = "restart rabbitmq"
ENV_FILE = "/etc/rabbitmq/rabbitmq-env.conf"
# Any Erlang CLI call (rabbitmqctl, the init script's status) starts epmd if none runs, with
# the environment of that moment. Until our env file is in place, checks report "not done"
# without calling the CLI, so epmd is never started listening on every interface.
READY = f"grep -qs ERL_EPMD_ADDRESS {ENV_FILE}"
CTL = f"{READY} && rabbitmqctl -q"
# epmd outlives the node; stopped with it, it comes back with the current env (addresses).
KILL_EPMD = "epmd -kill >/dev/null 2>&1 || true"


def nodename(ctx: RoleContext, address: str) -> str:
    """One-box: rabbit@localhost. AWS: rabbit@<private address> (long names need no DNS)."""
    return "rabbit@localhost" if ctx.onebox else f"rabbit@{address}"


def erlang_cookie(password: str) -> str:
    """The cluster's shared Erlang cookie, derived from the broker secret (same on every node)."""
    return hashlib.sha256(f"photostack-erlang-cookie:{password}".encode()).hexdigest().upper()[:40]


COOKIE = "/var/lib/rabbitmq/.erlang.cookie"


def cookie(password: str, clustered: bool) -> File | Command:
    """The Erlang cookie: shared (derived from the broker secret) when clustered; else any one.

    A single node's cookie only has to match its own CLI, so it is made once and kept: a new
    secret (a fresh one-box state dir) must not swap the cookie under a running node, whose
    CLI could then no longer stop it.
    """
    if clustered:
        return File(COOKIE, erlang_cookie(password), owner="rabbitmq", group="rabbitmq", mode=0o400,
                    sensitive=True, notify=(RESTART,))
    return Command(
        "erlang cookie",
        run=f"umask 077 && head -c 30 /dev/urandom | base64 | tr -dc A-Z0-9 > {COOKIE} && chown rabbitmq:rabbitmq {COOKIE} && chmod 400 {COOKIE}",
        unless=f"test -s {COOKIE}",
    )


def desired(ctx: RoleContext) -> DesiredState:
    d = ctx.defaults("rabbitmq")
    node = ctx.host.nodes_of("rabbitmq")[0]
    vhost = ctx.config.rabbitmq.vhost
    user = d["rabbitmq_user"]
    password = ctx.secret("rabbitmqPassword")
    address = ctx.bind_address
    peers = [nodename(ctx, ctx.address(n)) for h in ctx.hosts for n in h.nodes_of("rabbitmq")]
    dist_interface = "{" + address.replace(".", ",") + "}"
    env = ctx.template(
        "rabbitmq",
        "rabbitmq-env.conf.j2",
        longname=not ctx.onebox,
        nodename=nodename(ctx, address),
        address=address,
        port=ctx.port(node),
        epmd_addresses=address if ctx.onebox else f"127.0.0.1,{address}",
        dist_interface=dist_interface,
    )
    conf = ctx.template("rabbitmq", "rabbitmq.conf.j2", address=address, port=ctx.port(node), peers=peers)
    q = shlex.quote
    state = DesiredState(
        resources=[
            Packages(("rabbitmq-server",)),
            package_daemon_held("rabbitmq-server", ENV_FILE, then=KILL_EPMD),
            File(ENV_FILE, env, notify=(RESTART,)),
            File("/etc/rabbitmq/rabbitmq.conf", conf, notify=(RESTART,)),
            cookie(password, clustered=len(peers) > 1),
            Service(
                "rabbitmq-server",
                start="service rabbitmq-server start",
                status=f"{READY} && service rabbitmq-server status",
                stop="service rabbitmq-server stop",
            ),
            Command(f"vhost {vhost}", f"rabbitmqctl add_vhost {q(vhost)}", unless=f"{CTL} list_vhosts name | grep -qx {q(vhost)}"),
            Command(
                f"user {user}",
                run=(
                    f"{{ rabbitmqctl add_user {q(user)} {q(password)} || rabbitmqctl change_password {q(user)} {q(password)}; }} "
                    f"&& rabbitmqctl set_permissions -p {q(vhost)} {q(user)} '.*' '.*' '.*'"
                ),
                unless=(
                    f"{READY} && rabbitmqctl authenticate_user {q(user)} {q(password)} "
                    f"&& {CTL} list_permissions -p {q(vhost)} | grep -q '^{user}\\s'"
                ),
                sensitive=True,
            ),
            Command("no guest user", "rabbitmqctl delete_user guest", unless=f"users=$({CTL} list_users) && ! echo \"$users\" | grep -q '^guest\\s'"),
        ],
        handlers=[Handler(RESTART, f"service rabbitmq-server stop && {{ {KILL_EPMD}; }} && service rabbitmq-server start")],
    )
    if len(peers) > 1:
        state.resources.append(
            Command(
                f"mirror queues of {vhost}",
                f"rabbitmqctl set_policy -p {q(vhost)} --apply-to queues ha-all '.*' {q(d['rabbitmq_ha_policy'])}",
                unless=f"{CTL} list_policies -p {q(vhost)} | grep -q ha-all",
            )
        )
    return state
