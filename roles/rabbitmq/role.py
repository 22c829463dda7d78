"""rabbitmq: the Celery broker. Install → configure (env, config, cluster cookie) → service →
vhost, app logins, no guest (→ mirroring policy when clustered).

The app's login is named after its password (`login_name`): RabbitMQ keeps one password per user,
so while rabbitmqPassword rotates (ops/rotation.py) the old and the new password are two logins,
both allowed on the vhost; the app rolls to the new one and the rotation then deletes the old."""

from __future__ import annotations

import hashlib
import hmac
import json
import shlex

from roles.context import RoleContext, double_quoted
from roles.engine.resources import (
    Command,
    DesiredState,
    File,
    Handler,
    Packages,
    Service,
    package_daemon_held,
    safe_paths_command,
)

RESTART = "restart rabbitmq"
ENV_FILE = "/etc/rabbitmq/rabbitmq-env.conf"
# Any Erlang CLI call (rabbitmqctl, the init script's status) starts epmd if none runs, with
# the environment of that moment. Until our env file is in place, checks report "not done"
# without calling the CLI, so epmd is never started listening on every interface.
READY = f"grep -qs ERL_EPMD_ADDRESS {ENV_FILE}"
CTL = f"{READY} && rabbitmqctl -q"
# Checks ask the management API (one curl, ~10 ms) instead of rabbitmqctl (an Erlang VM start,
# ~0.6 s each): the app user's credentials sit in a root-only curl config, never on a command line.
CURL_CONFIG = "/etc/rabbitmq/photostack-api.curl"
# Munin's login: tag `monitoring` (reads the stats of every vhost through the management API's
# listings) and no permission on any vhost, so it can neither publish nor consume. Its own curl
# config proves its password in the converge check.
MUNIN_USER = "munin"
MUNIN_CURL_CONFIG = "/etc/rabbitmq/photostack-munin-api.curl"
# epmd outlives the node; stopped with it, it comes back with the current env (addresses).
KILL_EPMD = "epmd -kill >/dev/null 2>&1 || true"
# Read by the init script (hosts without systemd: the one-box). It waits this long for a node that
# already died at boot (a taken port, a bad config) before saying so; Debian's 600 s stalls a
# converge ten minutes for a failure the log names at once. systemd's notify unit sees the exit.
INIT_DEFAULTS = "/etc/default/rabbitmq-server"
STARTUP_TIMEOUT_S = 120


def nodename(ctx: RoleContext, address: str) -> str:
    """One-box: rabbit@localhost. AWS: rabbit@<private address> (long names need no DNS)."""
    return "rabbit@localhost" if ctx.target.one_machine() else f"rabbit@{address}"


def erlang_cookie(secret: str) -> str:
    """The cluster's shared Erlang cookie from its own secret (erlangCookie, held by the broker
    hosts only: the cookie gives full control of every node, the app's broker login must not).
    Hex, so any secret makes a cookie Erlang accepts."""
    return hashlib.sha256(f"photostack-erlang-cookie:{secret}".encode()).hexdigest().upper()[:40]


def munin_password(app_password: str) -> str:
    """The monitoring login's password, derived from the app's broker password (HMAC): the
    munin plugin config then holds a login that reads statistics only."""
    return hmac.new(app_password.encode(), b"photostack-rabbitmq-munin", "sha256").hexdigest()


def login_name(user: str, password: str) -> str:
    """The broker login of one app password: `<user>-<8 hex digits of an HMAC of the password>`.
    Stable for a password (app and broker hosts derive it apart, with no shared state) and new
    with each rotation. Eight hex digits say next to nothing about a generated 256-bit password."""
    return f"{user}-{hmac.new(password.encode(), b'photostack-rabbitmq-login', 'sha256').hexdigest()[:8]}"


def drop_logins(logins: list[str]) -> str:
    """Delete app logins a rotation retired (by name: nothing secret); missing ones are fine.
    RabbitMQ closes their connections: by then every app process uses the new login."""
    q = shlex.quote
    return " && ".join(f"{{ out=$(rabbitmqctl -q delete_user {q(login)} 2>&1) || echo \"$out\" | grep -q 'does not exist'; }}"
                       for login in logins)


def _whoami_as(api: str, login: str, password: str) -> str:
    """True when `login` answers the management API as a `monitoring` user; the credentials go to
    curl's config on stdin (printf is a builtin): never on a command line."""
    config = shlex.quote(f"user = {double_quoted(f'{login}:{password}')}")
    return f"printf '%s\\n' {config} | curl -sf -K - {api}/whoami | grep -qF '\"monitoring\"'"


def _app_login(login: str, password: str, vhost: str, api: str) -> Command:
    """One app login: password, all permissions on the vhost, tag `monitoring`."""
    q = shlex.quote
    return Command(
        f"user {login}",
        # The password reaches rabbitmqctl on stdin (printf is a builtin): never on a command line.
        run=(
            f"pw={q(password)}; "
            f"{{ printf %s \"$pw\" | rabbitmqctl add_user {q(login)} || printf %s \"$pw\" | rabbitmqctl change_password {q(login)}; }} "
            f"&& rabbitmqctl set_permissions -p {q(vhost)} {q(login)} '.*' '.*' '.*' "
            f"&& rabbitmqctl set_user_tags {q(login)} monitoring"
        ),
        sensitive=True,
        # Answering proves the password and the tag, both set by the same command as the
        # permissions (reading permissions back takes an administrator).
        unless=_whoami_as(api, login, password),
    )


COOKIE = "/var/lib/rabbitmq/.erlang.cookie"


def cookie(secret: str, clustered: bool) -> File | Command:
    """The Erlang cookie: shared (from the erlangCookie secret) when clustered; else any one.

    A single node's cookie only has to match its own CLI, so it is made once and kept: a new
    secret (a fresh one-box state dir) must not swap the cookie under a running node, whose
    CLI could then no longer stop it.
    """
    if clustered:
        return File(COOKIE, erlang_cookie(secret), owner="rabbitmq", group="rabbitmq", mode=0o400,
                    sensitive=True, notify=(RESTART,))
    # /var/lib/rabbitmq belongs to rabbitmq: written without following a link planted there.
    write = safe_paths_command("write", COOKIE, "rabbitmq", "rabbitmq", 0o400)
    return Command(
        "erlang cookie",
        run=f"head -c 30 /dev/urandom | base64 | tr -dc A-Z0-9 | {write}",
        unless=f"test -s {COOKIE}",
    )


def desired(ctx: RoleContext) -> DesiredState:
    d = ctx.defaults("rabbitmq")
    node = ctx.host.nodes_of("rabbitmq")[0]
    vhost = ctx.config.rabbitmq.vhost
    password = ctx.secret("rabbitmqPassword")
    user = login_name(d["rabbitmq_user"], password)
    address = ctx.bind_address
    peers = [nodename(ctx, ctx.address(n)) for h in ctx.hosts for n in h.nodes_of("rabbitmq")]
    dist_interface = "{" + address.replace(".", ",") + "}"
    env = ctx.template(
        "rabbitmq",
        "rabbitmq-env.conf.j2",
        longname=not ctx.target.one_machine(),
        nodename=nodename(ctx, address),
        address=address,
        port=ctx.port(node),
        epmd_addresses=",".join(dict.fromkeys(["127.0.0.1", address])),
        dist_interface=dist_interface,
    )
    conf = ctx.template(
        "rabbitmq", "rabbitmq.conf.j2", address=address, port=ctx.port(node), peers=peers,
        management_port=d["rabbitmq_management_port"],
    )
    api = f"http://{address}:{d['rabbitmq_management_port']}/api"
    api_get = f"curl -sf -K {CURL_CONFIG} {api}"
    q = shlex.quote
    state = DesiredState(
        resources=[
            Packages(("rabbitmq-server",)),
            package_daemon_held("rabbitmq-server", ENV_FILE, then=KILL_EPMD),
            File(ENV_FILE, env, notify=(RESTART,)),
            File("/etc/rabbitmq/rabbitmq.conf", conf, notify=(RESTART,)),
            cookie(ctx.secret("erlangCookie"), clustered=len(peers) > 1),
            File("/etc/rabbitmq/enabled_plugins", "[rabbitmq_management].\n", notify=(RESTART,)),
            File(INIT_DEFAULTS, f"# Managed by photostack (roles/rabbitmq/role.py).\nRABBITMQ_STARTUP_TIMEOUT={STARTUP_TIMEOUT_S}\n"),
            File(CURL_CONFIG, f"user = {double_quoted(f'{user}:{password}')}\n", mode=0o600, sensitive=True),
            Service(
                "rabbitmq-server",
                start="service rabbitmq-server start",
                # The broker is up when its AMQP port takes connections (no Erlang CLI start-up).
                status=f"timeout 2 bash -c '</dev/tcp/{address}/{ctx.port(node)}'",
                stop="service rabbitmq-server stop",
            ),
            # A `monitoring` user may list vhosts but not read one by name (administrators only).
            Command(
                f"vhost {vhost}",
                # Already there when the check's login is new (a rotation): fine.
                f"out=$(rabbitmqctl add_vhost {q(vhost)} 2>&1) || echo \"$out\" | grep -q already",
                unless=f"{api_get}/vhosts | grep -qF {q(json.dumps({'name': vhost}, separators=(',', ':'))[1:-1])}",
            ),
            # The current password's login, and while it rotates the other one's.
            *[_app_login(login_name(d["rabbitmq_user"], pw), pw, vhost, api) for pw in ctx.accepted("rabbitmqPassword")],
            File(MUNIN_CURL_CONFIG, f"user = {double_quoted(f'{MUNIN_USER}:{munin_password(password)}')}\n",
                 mode=0o600, sensitive=True),
            Command(
                f"user {MUNIN_USER}",
                run=(
                    f"pw={q(munin_password(password))}; "
                    f"{{ printf %s \"$pw\" | rabbitmqctl add_user {MUNIN_USER} || printf %s \"$pw\" | rabbitmqctl change_password {MUNIN_USER}; }} "
                    f"&& rabbitmqctl set_user_tags {MUNIN_USER} monitoring"
                ),
                sensitive=True,
                # Not through MUNIN_CURL_CONFIG: the check runs before this converge rewrites that file,
                # so after a rotation it would prove the old password and skip the change.
                unless=_whoami_as(api, MUNIN_USER, munin_password(password)),
            ),
            Command(
                "no guest user",
                # Idempotent on its own: the API check cannot answer before the first restart.
                "out=$(rabbitmqctl delete_user guest 2>&1) || echo \"$out\" | grep -q 'does not exist'",
                unless=f"[ \"$(curl -s -o /dev/null -w '%{{http_code}}' -u guest:guest {api}/whoami)\" = 401 ]",
            ),
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
