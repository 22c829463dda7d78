"""Throwaway real servers for the app tests: PostgreSQL 15 (two databases = two physical
shards) behind pgbouncer in transaction pooling mode, Redis, Memcached, RabbitMQ, and a real
Celery worker. All on loopback ports the kernel picks, in a temp dir, torn down at session end.

`running_stack()` (also used by bench/app_load.py --local) sets the app's environment
variables and migrates the shards through pgbouncer; `app_stack` (session fixture) adds Django.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
REPO = Path(__file__).resolve().parent.parent
LOGICAL_SHARDS = 8
PHYSICAL_SHARDS = 2
DB_USER = "photostack"
DB_PASSWORD = "test-password"


def start_nginx(directory: Path, site: str, workers: int = 1, connections: int = 64) -> subprocess.Popen:
    """A throwaway nginx (root workers, in the foreground) serving `site` from `directory`. Its own
    temp dirs: nginx takes over the compiled-in /var/lib/nginx/* for its worker user at start, which
    would lock the one-box's nginx (www-data) out of buffering request bodies."""
    (directory / "site.conf").write_text(site)
    temp = " ".join(f"{kind}_temp_path {directory}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (directory / "nginx.conf").write_text(
        f"user root;\nworker_processes {workers};\ndaemon off;\npid {directory}/nginx.pid;\n"
        f"error_log {directory}/error.log warn;\nevents {{ worker_connections {connections}; }}\n"
        f"http {{ include /etc/nginx/mime.types; access_log off; {temp}\n include {directory}/site.conf; }}\n")
    return subprocess.Popen(["nginx", "-p", str(directory), "-c", str(directory / "nginx.conf")],
                            stderr=subprocess.PIPE, start_new_session=True)


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports the kernel hands out for port 0 right now.

    The servers started on them (postgres, rabbitmq ...) cannot bind port 0 and report it, so the
    port is picked here and released for them: no fixed range that parallel runs collide in, and
    the kernel's choice is random, so the window between release and the server's bind is all
    that remains."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:  # all held open until the last is bound: never the same port twice
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_port(port: int, proc: subprocess.Popen | None, timeout: float, what: str) -> None:
    """Block until something accepts on the port (or fail naming the service)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


def as_user(user: str, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv]


@dataclass
class AppStack:
    """What the tests need to know about the running services."""

    root: Path
    env: dict[str, str]
    pg_port: int
    bouncer_port: int
    redis_port: int
    memcached_port: int
    amqp_port: int
    media_root: Path
    shardmap_path: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def direct_dsn(self, dbname: str) -> str:
        """Straight to PostgreSQL (bypassing pgbouncer) as the superuser: for assertions."""
        return f"host=127.0.0.1 port={self.pg_port} dbname={dbname} user=postgres"


def _start_postgres(stack: AppStack) -> None:
    data = stack.root / "pg"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        as_user("postgres", [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]),
        check=True, capture_output=True,
    )
    opts = f"-p {stack.pg_port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    subprocess.run(
        as_user("postgres", [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(data / "log"), "-w", "start"]),
        check=True, capture_output=True,
    )
    import psycopg

    with psycopg.connect(stack.direct_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}'")
        for n in range(PHYSICAL_SHARDS):
            conn.execute(f"CREATE DATABASE shard{n} OWNER {DB_USER}")
            conn.execute(f"CREATE DATABASE mig{n} OWNER {DB_USER}")


def _stop_postgres(stack: AppStack) -> None:
    subprocess.run(
        as_user("postgres", [str(PG_BIN / "pg_ctl"), "-D", str(stack.root / "pg"), "-m", "immediate", "stop"]),
        capture_output=True,
    )


def _start_pgbouncer(stack: AppStack) -> None:
    conf = stack.root / "pgbouncer"
    conf.mkdir()
    dbs = "\n".join(
        f"shard{n} = host=127.0.0.1 port={stack.pg_port} dbname=shard{n}" for n in range(PHYSICAL_SHARDS)
    )
    (conf / "users.txt").write_text(f'"{DB_USER}" "{DB_PASSWORD}"\n')
    (conf / "pgbouncer.ini").write_text(
        f"[databases]\n{dbs}\n\n[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {stack.bouncer_port}\nunix_socket_dir =\n"
        f"auth_type = md5\nauth_file = {conf / 'users.txt'}\n"
        "pool_mode = transaction\nmax_client_conn = 500\ndefault_pool_size = 20\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
        f"logfile = {conf / 'pgbouncer.log'}\npidfile = {conf / 'pgbouncer.pid'}\n"
    )
    shutil.chown(conf, "postgres")
    for item in conf.iterdir():
        shutil.chown(item, "postgres")
    start_pgbouncer(stack)


def start_pgbouncer(stack: AppStack) -> None:
    """pgbouncer with the stack's config (again, after a test stopped it); waits until it listens."""
    conf = stack.root / "pgbouncer"
    (conf / "pgbouncer.pid").unlink(missing_ok=True)  # left behind by a killed one: it would refuse to start
    proc = subprocess.Popen(as_user("postgres", ["pgbouncer", str(conf / "pgbouncer.ini")]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    stack.procs["pgbouncer"] = proc
    wait_port(stack.bouncer_port, proc, 10, "pgbouncer")


def _start_redis_memcached(stack: AppStack) -> None:
    start_redis(stack)
    start_memcached(stack)


def start_redis(stack: AppStack) -> None:
    """Redis on the stack's port, empty (again, after a test stopped it)."""
    stack.procs["redis"] = subprocess.Popen(
        ["redis-server", "--port", str(stack.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(stack.root)],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )


def start_memcached(stack: AppStack) -> None:
    """Memcached on the stack's port (again, after a test stopped it)."""
    stack.procs["memcached"] = subprocess.Popen(
        ["memcached", "-l", "127.0.0.1", "-p", str(stack.memcached_port), "-U", "0", "-u", "memcache", "-m", "32"],
        start_new_session=True,
    )


def _start_rabbitmq(stack: AppStack, dist_port: int, epmd_port: int) -> None:
    home = stack.root / "rabbitmq"
    home.mkdir()
    (home / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{stack.amqp_port}\n")
    (home / "enabled_plugins").write_text("[].\n")
    shutil.chown(home, "rabbitmq")
    for item in home.iterdir():
        shutil.chown(item, "rabbitmq")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "RABBITMQ_NODENAME": f"pstest{stack.amqp_port}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(stack.amqp_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "ERL_EPMD_PORT": str(epmd_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
        "RABBITMQ_LOG_BASE": str(home / "log"),
        "RABBITMQ_PID_FILE": str(home / "pid"),
        "RABBITMQ_LOGS": str(home / "rabbit.log"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }
    # Our own epmd on its own port, in the foreground: the node registers with it instead of
    # daemonizing one that would outlive the test (and the one-box's epmd stays untouched).
    stack.procs["epmd"] = subprocess.Popen(
        as_user("rabbitmq", ["epmd", "-port", str(epmd_port), "-address", "127.0.0.1"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    wait_port(epmd_port, stack.procs["epmd"], 10, "epmd")
    log = open(home / "server.out", "wb")
    proc = subprocess.Popen(
        ["runuser", "-u", "rabbitmq", "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
         "/usr/lib/rabbitmq/bin/rabbitmq-server"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    stack.procs["rabbitmq"] = proc


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill a throwaway service started in its own session, children included (nothing of
    theirs is worth a graceful shutdown)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def start_worker(stack: AppStack) -> subprocess.Popen:
    """A real Celery worker process consuming both queues (threads pool: quick to start)."""
    log = open(stack.root / "worker.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "app.celery:celery_app", "worker", "-Q", "thumbnails,feed", "-n", f"suite{stack.amqp_port}@%h",
         "--pool", "threads", "-c", "4", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-l", "warning"],
        cwd=REPO, env={**os.environ, **stack.env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    return proc


def app_env(stack: AppStack) -> dict[str, str]:
    """The app's environment variables for this stack (the set the app role renders)."""
    return {
        "DJANGO_SECRET_KEY": "test-secret-key-" + "x" * 40,
        "PHOTOSTACK_STACK": "test",
        "PHOTOSTACK_RELEASE": "test-release",
        "PHOTOSTACK_SHARDMAP": str(stack.shardmap_path),
        "PHOTOSTACK_DB_HOST": "127.0.0.1",
        "PHOTOSTACK_DB_PORT": str(stack.bouncer_port),
        "PHOTOSTACK_DB_USER": DB_USER,
        "PHOTOSTACK_DB_PASSWORD": DB_PASSWORD,
        "PHOTOSTACK_DB_POOL_MAX": "8",
        "PHOTOSTACK_REDIS_URL": f"redis://127.0.0.1:{stack.redis_port}/0",
        "PHOTOSTACK_MEMCACHED": f"127.0.0.1:{stack.memcached_port}",
        "PHOTOSTACK_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{stack.amqp_port}//",
        "PHOTOSTACK_STORAGE": "local",
        "PHOTOSTACK_MEDIA_ROOT": str(stack.media_root),
        "PHOTOSTACK_MEDIA_URL": "/media/",
        "PHOTOSTACK_MAX_UPLOAD_BYTES": str(256 * 1024),
    }


@contextmanager
def running_stack(with_worker: bool = True) -> Iterator[AppStack]:
    """Every service up, the app's env set in os.environ, shards migrated through pgbouncer,
    optionally a Celery worker; everything stopped and the env restored on exit."""
    root = Path(tempfile.mkdtemp(prefix="photostack-app-"))
    root.chmod(0o755)
    pg, bouncer, redis_port, mc, amqp, dist, epmd = free_ports(7)
    stack = AppStack(root, {}, pg, bouncer, redis_port, mc, amqp, root / "media", root / "shardmap.json")
    saved_env = dict(os.environ)
    try:
        from infra.sharding import ShardMap

        per = LOGICAL_SHARDS // PHYSICAL_SHARDS
        stack.shardmap_path.write_text(ShardMap(tuple(i // per for i in range(LOGICAL_SHARDS)), PHYSICAL_SHARDS).to_json())
        _start_rabbitmq(stack, dist, epmd)  # slowest to boot: first, in the background
        _start_redis_memcached(stack)
        _start_postgres(stack)
        _start_pgbouncer(stack)
        stack.env.update(app_env(stack))
        os.environ.update({k: v for k, v in stack.env.items() if not k.startswith("_")})

        from app import migrate

        config = migrate.load_app_config(os.environ)
        migrate.migrate(ShardMap.from_json(stack.shardmap_path.read_text()), config.migrate_dsn,
                        migrate.load_migrations(), config.id_epoch_ms)
        wait_port(stack.redis_port, stack.procs["redis"], 10, "redis")
        wait_port(stack.memcached_port, stack.procs["memcached"], 10, "memcached")
        try:
            wait_port(stack.amqp_port, stack.procs["rabbitmq"], 30, "rabbitmq")
        except RuntimeError as exc:
            tail = (root / "rabbitmq" / "server.out").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{exc}; its output ends with:\n{tail}") from None
        if with_worker:
            stack.procs["worker"] = start_worker(stack)
        yield stack
    finally:
        from app.shards import _router

        if _router.cache_info().currsize:  # a router was built: close its pools
            _router().close()
        for proc in reversed(stack.procs.values()):  # reverse start order: clients before servers
            _kill_group(proc)
        _stop_postgres(stack)
        os.environ.clear()
        os.environ.update(saved_env)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def app_stack() -> Iterator[AppStack]:
    """The running stack with Django set up in this process (tests use Django's test Client)."""
    with running_stack() as stack:
        import django
        from django.test.utils import override_settings, setup_test_environment

        os.environ["DJANGO_SETTINGS_MODULE"] = "app.settings"
        django.setup()
        setup_test_environment()
        # Django's documented speed-up for tests: a cheap hasher (production keeps PBKDF2).
        override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]).enable()
        yield stack
