"""What the app and worker roles share on a host: the release (venv, code, `current`), the
environment file, the launcher, and one restart handler for every app/worker process.

Both roles declare these same resources; the engine keeps one copy of identical declarations,
so a host running both gets each once.
"""

from __future__ import annotations

import shlex
import urllib.parse
from typing import NamedTuple

from infra.records import record
from infra.shardstore import HOST_SHARDMAP_PATH
from infra.topology import Node
from roles.app import release as rel
from roles.app.deploy import wait_until
from roles.context import RoleContext
from roles.engine.resources import Command, Directory, File, Handler, Packages, Service
from roles.postgres.auth import app_login
from roles.rabbitmq.role import login_name
from roles.redis.primary import primary_node

ENV_FILE = "/etc/photostack/app.env"
LAUNCHER = "/usr/local/bin/photostack-run"
RESTART = "restart app and workers"


def user(ctx: RoleContext) -> str:
    return ctx.defaults("base")["base_user"]


def app_env(ctx: RoleContext) -> str:
    """/etc/photostack/app.env from the stack: pgbouncer on this host, the Redis primary now
    (roles/redis/primary.py), Memcached, RabbitMQ, storage, Sentry."""
    d = ctx.defaults("app")
    nodes = [n for h in ctx.hosts for n in h.nodes]
    redis = primary_node(ctx.config, ctx.stack)
    redis_pw = urllib.parse.quote(ctx.secret("redisPassword"), safe="")
    mq_pw = urllib.parse.quote(ctx.secret("rabbitmqPassword"), safe="")
    vhost = urllib.parse.quote(ctx.config.rabbitmq.vhost, safe="")
    mq_user = login_name(ctx.defaults("rabbitmq")["rabbitmq_user"], ctx.secret("rabbitmqPassword"))
    brokers = ";".join(f"amqp://{mq_user}:{mq_pw}@{ctx.address(n)}:{ctx.port(n)}/{vhost}"
                       for n in nodes if n.role == "rabbitmq")
    hosts = ["127.0.0.1", "localhost", ctx.config.domain, f".{ctx.config.domain}"]
    if ctx.bind_address not in hosts:  # health checks ask for the host by its address
        hosts.append(ctx.bind_address)
    return ctx.template(
        "app", "app.env.j2",
        user=user(ctx),
        secret_key=ctx.secret("djangoSecretKey"),
        # Only while the key rotates: the other key, accepted on signatures (SECRET_KEY_FALLBACKS).
        secret_key_fallback=ctx.also_accepted("djangoSecretKey"),
        shardmap=HOST_SHARDMAP_PATH,
        # pgbouncer runs on every app and worker host (infra/inventory.py CO_LOCATED).
        db_host="127.0.0.1",
        db_port=ctx.target.port("pgbouncer"),
        db_user=app_login(ctx.secret("dbPassword"), ctx.secret("scramSaltKey")),
        db_password=ctx.secret("dbPassword"),
        db_pool_max=d["app_threads"],
        redis_url=f"redis://:{redis_pw}@{ctx.address(redis)}:{ctx.port(redis)}/0",
        memcached=",".join(f"{ctx.address(n)}:{ctx.port(n)}" for n in nodes if n.role == "memcached"),
        broker_url=brokers,
        storage="s3" if ctx.target.object_storage() else "local",
        media_root=d["app_media_root"],
        s3_bucket=media_bucket(ctx) if ctx.target.object_storage() else "",
        sentry_dsn=ctx.secret("sentryDsn") if ctx.config.alerting.sentry else "",
        allowed_hosts=",".join(hosts),
        max_upload_bytes=10 * 1024 * 1024,
        queue_budget_ms=d["app_queue_budget_ms"],
    )


MEDIA_RECORD = "media"  # infra/record_parameters.py: {"bucket": name}, the program's own


def media_bucket(ctx: RoleContext) -> str:
    """The media bucket of an AWS stack, as the program recorded it (its name is the engine's)."""
    stored = record(ctx.config, ctx.stack, MEDIA_RECORD).load()
    if not stored or not stored.get("bucket"):
        raise ValueError(f"stack {ctx.stack}: the {MEDIA_RECORD} record names no media bucket (run `pulumi up`)")
    return stored["bucket"]


def run(ctx: RoleContext, argv: list[str]) -> str:
    """A shell command running a program of the current release as the service user."""
    return f"runuser -u {user(ctx)} -- {LAUNCHER} " + " ".join(shlex.quote(a) for a in argv)


RELEASE_RECORD = "release"  # infra/records.py: {version, previous, pinned}, written by `ops deploy`/`ops rollback`


def running_version(ctx: RoleContext, built: rel.Release) -> str:
    """The version `current` should point at: the working tree's release, unless an operator
    pinned another one (`ops deploy --version V`, `ops rollback`); a converge never undoes that."""
    stored = record(ctx.config, ctx.stack, RELEASE_RECORD).load() or {}
    return stored["version"] if stored.get("pinned") else built.version


def release_resources(ctx: RoleContext) -> list:
    """Packages, accounts' directories, the release (venv → ship → switch → prune), env, launcher."""
    d = ctx.defaults("app")
    owner = user(ctx)
    release = rel.current_release()
    wanted = running_version(ctx, release)
    keep = d["app_releases_keep"]
    return [
        # The servers' psql version: the converge checks call its binary directly (app/role.py).
        Packages(("python3-venv", "curl", f"postgresql-client-{ctx.config.postgres.version}")),
        Directory(rel.ROOT),
        Directory(rel.RELEASES),
        Directory(rel.VENVS),
        Directory(d["app_run_dir"], owner=owner, group=owner),
        Directory(d["app_log_dir"], owner=owner, group=owner),
        Directory(d["app_media_root"], owner=owner, group=owner),
        Command(f"venv {release.venv}", run=rel.venv_script(release), unless=rel.venv_ready(release)),
        Command(f"release {release.version}", run=rel.ship_script(release), unless=rel.shipped(release)),
        File(ENV_FILE, app_env(ctx), group=owner, mode=0o640, sensitive=True, notify=(RESTART,)),
        File(LAUNCHER, ctx.template("app", "photostack-run.j2", env_file=ENV_FILE, current=rel.CURRENT),
             mode=0o755, notify=(RESTART,)),
        Command(f"current → {wanted}", run=rel.switch_script(wanted), unless=rel.switched(wanted), notify=(RESTART,)),
        Command(f"keep {keep} releases", run=rel.prune_script(keep), unless=rel.pruned(keep, release)),
    ]


class Process(NamedTuple):
    """One app or worker process on a host: its systemd unit files and its Service."""

    unit: File
    service: Service
    socket: File | None = None  # the app's listening socket, held by systemd across restarts

    @property
    def files(self) -> list[File]:
        return [f for f in (self.socket, self.unit) if f is not None]


def unit_file(ctx: RoleContext, unit: str, description: str, argv: list[str], socket: str = "") -> File:
    """The systemd unit of one process (used where systemd runs), bound to its `socket` unit if any."""
    exec_start = f"{LAUNCHER} " + " ".join(shlex.quote(a) for a in argv)
    run_dir = ctx.defaults("app")["app_run_dir"]
    content = ctx.template("app", "unit.service.j2", description=description, user=user(ctx),
                           exec_start=exec_start.replace("%", "%%"), socket=socket,
                           runtime_dir=run_dir.removeprefix("/run/") if run_dir.startswith("/run/") else None)
    return File(f"/etc/systemd/system/{unit}", content, notify=(RESTART,))


def daemon(ctx: RoleContext, name: str, unit: str, argv: list[str], detach: list[str], pidfile: str,
           ready: str, socket: str = "") -> Service:
    """One process as a Service: its systemd unit where systemd runs, else the same program
    daemonized (`detach` adds the program's own daemonize/pidfile options). `ready` (a shell
    check) is awaited after every start and restart, so one that never gets ready fails."""
    waited = wait_until(ready, ctx.defaults("app")["app_start_wait_s"])
    return Service.daemon(name, unit, run(ctx, argv + detach), pidfile, socket=socket, ready=waited)


def app_unit(ctx: RoleContext, node: Node) -> tuple[str, str]:
    """(systemd unit, pidfile) of an app node's gunicorn."""
    port = ctx.port(node)
    return f"photostack-app-{port}.service", f"{ctx.defaults('app')['app_run_dir']}/app-{port}.pid"


def worker_unit(ctx: RoleContext, node: Node) -> tuple[str, str]:
    """(systemd unit, pidfile) of a worker node's Celery worker."""
    name = f"worker-{node.index}"
    return f"photostack-{name}.service", f"{ctx.defaults('app')['app_run_dir']}/{name}.pid"


def app_processes(ctx: RoleContext) -> list[Process]:
    """One gunicorn per app node on this host, each answering /health/node (the process serves,
    whatever its dependencies do) before its start counts as done.

    Where systemd runs, a socket unit holds the listening socket and hands it to gunicorn
    (gunicorn takes LISTEN_FDS and ignores its -b then): a converge that restarts the app under
    load, with no nginx drain in front, leaves requests waiting in the backlog, not refused."""
    d = ctx.defaults("app")
    found = []
    for node in ctx.host.nodes_of("app"):
        port, address = ctx.port(node), ctx.bind_address
        unit, pidfile = app_unit(ctx, node)
        socket = unit.removesuffix(".service") + ".socket"
        argv = ["gunicorn", "app.wsgi:application", "-k", "gthread",
                "-w", str(ctx.config.fleets.app.processes), "--threads", str(d["app_threads"]),
                "-b", f"{address}:{port}", "--backlog", str(d["app_backlog"]), "--timeout", str(d["app_timeout"]),
                "--graceful-timeout", str(d["app_graceful_timeout"]), "--keep-alive", str(d["app_keepalive"]),
                "--error-logfile", f"{d['app_log_dir']}/app-{port}.log", "--capture-output",
                # Two instances share a home: their default control sockets would clash (unused).
                "--no-control-socket"]
        ready = f"curl -fs -o /dev/null --max-time 2 http://{address}:{port}/health/node"
        # The pid file on either path: a deploy's roll reads it (the release it runs, its socket).
        pid = ["--pid", pidfile]
        socket_file = File(f"/etc/systemd/system/{socket}",
                           ctx.template("app", "unit.socket.j2", port=port, address=address, backlog=d["app_backlog"]),
                           notify=(RESTART,))
        found.append(Process(
            unit_file(ctx, unit, f"photostack app (gunicorn :{port})", argv + pid, socket=socket),
            daemon(ctx, f"gunicorn {port}", unit, argv, ["--daemon", *pid], pidfile, ready, socket=socket),
            socket_file,
        ))
    return found


def worker_processes(ctx: RoleContext) -> list[Process]:
    """One Celery worker per worker node on this host (unit file, service)."""
    d, w = ctx.defaults("app"), ctx.defaults("worker")
    found = []
    for node in ctx.host.nodes_of("worker"):
        name = f"worker-{node.index}"
        unit, pidfile = worker_unit(ctx, node)
        argv = ["celery", "-A", "app.celery:celery_app", "worker", "-Q", ",".join(w["worker_queues"]),
                "-n", f"{name}@%h", "--pool", w["worker_pool"], "-c", str(ctx.config.fleets.worker.processes),
                "-l", w["worker_log_level"], "--logfile", f"{d['app_log_dir']}/{name}.log",
                # Workers need nothing from each other: no gossip (an event queue per worker), no
                # mingle (a sync with the others at every start, slowing restarts in a deploy), no
                # event heartbeats (monitoring reads RabbitMQ's management API instead).
                "--without-gossip", "--without-mingle", "--without-heartbeat"]
        pid = ["--pidfile", pidfile]  # on either path: its readiness and a deploy's roll read it
        found.append(Process(
            unit_file(ctx, unit, f"photostack Celery {name}", argv + pid),
            # --detach: stays in the release dir it started in
            daemon(ctx, f"celery {name}", unit, argv, ["--detach", *pid], pidfile, ready=f"[ -s {pidfile} ]"),
        ))
    return found


def restart_handler(ctx: RoleContext) -> Handler:
    """Restart every app and worker process of the host in turn (each gets ready before the next
    stops): a rolling restart, so nginx always has an upstream. Each start and restart re-reads
    the units first (Service.daemon)."""
    return Handler(RESTART, restarts=tuple(p.service for p in app_processes(ctx) + worker_processes(ctx)))
