"""Day-2 operations without the one-box: stored primaries, roles rendering a failed-over shard,
exact command text of the runbook steps, the deploy lock, the status parser."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from infra.targets.onebox import FileRecord
from infra.shardstore import Primaries, ShardRole, primaries_store
from ops import maintenance
from ops.lock import LockHeld, held, read_lock
from ops.overview import MARK, Overview, parse_host
from ops.stack import Stack
from roles.context import desired_state
from roles.engine.resources import Command, File
from roles.pgbouncer.role import databases
from roles.postgres import commands
from roles.postgres.cluster import Cluster, all_clusters


def test_primaries_failover_then_rebuild_round_trips(tmp_path):
    p = Primaries().failed_over(0, 1)
    assert p.of(0) == ShardRole(1, (0,)) and p.of(1) == ShardRole()
    assert p.failed_over(0, 0).of(0) == ShardRole(0, (1,))  # failing back fences member 1
    assert p.rebuilt(0, 0).of(0) == ShardRole(1, ())
    with pytest.raises(ValueError, match="primary"):
        p.out_of_service(0, 1)
    record = FileRecord(tmp_path / "primaries.json")
    record.save(p.to_dict())
    assert Primaries.from_dict(record.load()) == p
    assert Primaries.from_dict(FileRecord(tmp_path / "absent.json").load()) == Primaries()


def test_converge_after_failover_keeps_the_promoted_replica_primary(state_root):
    stack = Stack.load("onebox")
    primaries_store(stack.config, stack.name).save(Primaries().failed_over(0, 1))
    ctx = stack.context(stack.hosts[0])
    roles = {c.name: c for c in all_clusters(ctx)}
    assert roles["shard0r1"].is_primary and not roles["shard0"].is_primary and not roles["shard0"].in_service
    state = desired_state("postgres", ctx)
    conf = {r.path: r.content for r in state.resources if isinstance(r, File)}
    new_primary = conf["/etc/postgresql/15/shard0r1/postgresql.conf"]
    assert "synchronous_standby_names = ''" in new_primary and "primary_conninfo" not in new_primary
    old = conf["/etc/postgresql/15/shard0/postgresql.conf"]
    assert f"port={roles['shard0r1'].port} " in old and "primary_slot_name = 'shard0'" in old
    assert "synchronous_standby_names = 'ANY 1 (shard1r1)'" in conf["/etc/postgresql/15/shard1/postgresql.conf"]
    names = [r.name for r in state.resources if isinstance(r, Command)]
    assert names.index("base backup shard0 from shard0r1") > names.index("logins on shard0r1")  # primary first
    # Back in service: the old primary is the synchronous standby again.
    primaries_store(stack.config, stack.name).save(Primaries().failed_over(0, 1).rebuilt(0, 0))
    state = desired_state("postgres", stack.context(stack.hosts[0]))
    conf = {r.path: r.content for r in state.resources if isinstance(r, File)}
    assert "synchronous_standby_names = 'ANY 1 (shard0)'" in conf["/etc/postgresql/15/shard0r1/postgresql.conf"]


def test_pgbouncer_follows_the_primary_and_reads_from_it_while_degraded():
    clusters = [Cluster(15, 0, 0, "127.0.0.1", 5433, acting_primary=1, in_service=False),
                Cluster(15, 0, 1, "127.0.0.1", 5434, acting_primary=1)]
    assert [(d.name, d.port) for d in databases(clusters)] == [("shard0", 5434), ("shard0_ro", 5434)]
    clusters[0] = Cluster(15, 0, 0, "127.0.0.1", 5433, acting_primary=1)
    assert [(d.name, d.port) for d in databases(clusters)] == [("shard0", 5434), ("shard0_ro", 5433)]


def test_failover_commands_are_exact():
    old = Cluster(15, 0, 0, "127.0.0.1", 5433)
    assert commands.fence(old) == (
        "{ pg_ctlcluster 15 shard0 stop -m immediate >/dev/null 2>&1 || true; }; "
        "if [ -d /var/lib/postgresql/15/shard0 ]; then rm -rf /var/lib/postgresql/15/shard0.fenced && "
        "mv /var/lib/postgresql/15/shard0 /var/lib/postgresql/15/shard0.fenced; fi"
    )
    assert commands.promote(Cluster(15, 0, 1, "127.0.0.1", 5434), 5).startswith(
        "pg_ctlcluster 15 shard0r1 promote && for i in $(seq 50); do ")
    assert commands.warm_cache(old) == "vmtouch -q -t /var/lib/postgresql/15/shard0/base"
    assert commands.replica_built(old).endswith("[ -f /var/lib/postgresql/15/shard0/standby.signal ]")
    build = commands.build_replica(old, Cluster(15, 0, 1, "127.0.0.1", 5434))
    assert "pg_ctlcluster 15 shard0 stop -m immediate" in build
    assert "rm -rf /var/lib/postgresql/15/shard0 /var/lib/postgresql/15/shard0.fenced" in build


def test_fence_makes_a_running_data_dir_unstartable(tmp_path):
    data = tmp_path / "15" / "shard9"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("15\n")
    cluster = Cluster(15, 9, 0, "127.0.0.1", 5499)
    script = commands.fence(cluster).replace("/var/lib/postgresql", str(tmp_path))
    subprocess.run(["bash", "-c", script], check=True)
    assert not data.exists() and (tmp_path / "15" / "shard9.fenced" / "PG_VERSION").exists()
    replica_check = commands.replica_built(cluster).replace("/var/lib/postgresql", str(tmp_path))
    assert subprocess.run(["bash", "-c", replica_check]).returncode != 0  # the next converge rebuilds it


def test_memcached_flush_speaks_the_text_protocol():
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    got: list[bytes] = []

    def answer():
        conn, _ = server.accept()
        got.append(conn.recv(100))
        conn.sendall(b"OK\r\n")
        conn.close()

    thread = threading.Thread(target=answer)
    thread.start()
    script = maintenance.memcached_flush_script("127.0.0.1", server.getsockname()[1])
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=10)
    thread.join(5)
    server.close()
    assert done.returncode == 0, done.stdout
    assert got[0].startswith(b"flush_all\r\n")


def test_queue_move_script_moves_at_most_limit_messages_in_order(app_stack, tmp_path):
    """The script as a host runs it (its app.env, the release's Python) against a real RabbitMQ."""
    import uuid

    import amqp

    source, target = f"move-src-{uuid.uuid4().hex[:8]}", f"move-dst-{uuid.uuid4().hex[:8]}"  # no worker consumes them
    conn = amqp.Connection(f"127.0.0.1:{app_stack.amqp_port}", userid="guest", password="guest")
    conn.connect()
    channel = conn.channel()
    channel.queue_declare(source, durable=True, auto_delete=False)
    for i in range(15):
        channel.basic_publish(amqp.Message(f"task {i}"), exchange="", routing_key=source)
    env_file = tmp_path / "app.env"
    env_file.write_text(f"PHOTOSTACK_BROKER_URL={app_stack.env['PHOTOSTACK_BROKER_URL']}\n")
    script = (maintenance.queue_move_script(source, target, 10)
              .replace(maintenance.APP_ENV, str(env_file)).replace(maintenance.RELEASE_PYTHON, sys.executable))
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["moved", "10"], done.stdout + done.stderr

    def drain(queue: str) -> list[str]:
        bodies = []
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            bodies.append(message.body)
        return bodies

    assert drain(target) == [f"task {i}" for i in range(10)]
    assert drain(source) == [f"task {i}" for i in range(10, 15)]
    channel.queue_delete(source), channel.queue_delete(target)
    conn.close()
    # Published (and confirmed) before the source is acked: a crash in between duplicates, never loses.
    program = shlex.split(script.split(" -c ", 1)[1])[0]
    assert "ch.confirm_select()" in program and program.index("basic_publish") < program.index("basic_ack")


def test_restart_script_stops_then_starts():
    from roles.engine.resources import Service

    s = Service("x", start="start-x", status="status-x", stop="stop-x")
    assert maintenance.restart_script([s]) == "{ ( status-x ) >/dev/null 2>&1 && ( stop-x ) || true; } && ( start-x )"


def test_deploy_lock_excludes_a_second_holder_and_takes_over_a_stale_one(tmp_path):
    path = tmp_path / "deploy.lock"
    with held(path, "deploy v1") as info:
        assert read_lock(path) == info
        with pytest.raises(LockHeld, match="deploy v1 by"):
            with held(path, "deploy v2"):
                pass
    assert read_lock(path) is None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = json.loads(json.dumps({"owner": "x", "host": os.uname().nodename, "pid": int(dead.stdout),
                                   "since": 0.0, "purpose": "deploy v0"}))
    path.write_text(json.dumps(stale))
    notes: list[str] = []
    with held(path, "deploy v3", notes):
        assert read_lock(path).purpose == "deploy v3"
    assert notes and "deploy v0" in notes[0]


def test_status_parses_services_limits_shards_and_health():
    output = "\n".join([
        f"{MARK}service postgres postgres shard0", "up",
        f"{MARK}munin pgbouncer", "waiting.warning 5", "waiting.critical 20", "waiting.value 25", "active.value 3",
        f"{MARK}munin cpu", "user.value 5",
        f"{MARK}shard 0 shard0 primary", "down",
        f"{MARK}health app-0", "503 Service Unavailable",
    ])
    view = Overview()
    parse_host("onebox", output, view)
    assert view.services == [("onebox", "postgres", "postgres shard0", "up")]
    assert [(r.field, r.state, r.runbook) for r in view.readings] == [("waiting", "critical", "pgbouncer_clients_waiting")]
    assert view.shards == [(0, "shard0", "primary", "down")]
    assert view.health == [("app-0", "503 Service Unavailable")] and not view.healthy
