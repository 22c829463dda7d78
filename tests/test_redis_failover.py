"""`ops redis-failover` (ops/redis_failover.py): its plan read from the stack and its `redis`
record, its refusals, and its Redis commands and the role's in-place replication handler on real
redis-servers (a primary and its replica on free ports, as the role configures them)."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from infra.config import load_stack_config
from infra.inventory import onebox_hosts
from ops import redis_failover as rf
from ops.stack import Stack
from roles.context import RoleContext, double_quoted
from roles.redis import commands
from roles.redis.acl import ADMIN_USER, acl_rules
from roles.redis.primary import primary_node, save_primary, stored_primary
from roles.redis.role import apply_replication
from tests.app_services import free_ports, wait_port

ADMIN = "admin pw with a \"quote\""


@pytest.fixture
def stack(state_root) -> Stack:
    """The one-box stack with a private state dir (records are written there)."""
    return Stack.load("onebox")


def test_the_plan_fences_the_stored_primary_and_promotes_the_other(stack):
    steps = rf.failover_steps(stack)
    assert steps[0].startswith("fence redis-primary on onebox")
    assert steps[1] == "promote redis-replica1 (REPLICAOF NO ONE)"
    assert "app-0" in steps[5] and "worker-0" in steps[5]
    assert steps[-1].startswith("drop every feed")
    save_primary(stack.config, stack.name, 1)  # after a failover, the next one goes back
    steps = rf.failover_steps(stack)
    assert steps[0].startswith("fence redis-replica1 on onebox") and steps[1] == "promote redis-primary (REPLICAOF NO ONE)"


def test_no_replica_is_one_clear_refusal(stack):
    alone = replace(stack, config=stack.config.model_copy(update={"redis": stack.config.redis.model_copy(
        update={"replicas": 0})}))
    with pytest.raises(rf.RedisFailoverError, match=r"^stack onebox has no Redis replica to promote \(redis.replicas is 0"):
        rf.failover_steps(alone)


def test_a_replica_with_no_running_host_cannot_be_promoted(stack):
    # As on AWS with the replica's instance stopped: the running hosts hold only the primary.
    only_primary = [h for h in stack.hosts]
    stack.__dict__["hosts"] = [replace(h, nodes=tuple(n for n in h.nodes if n.name != "redis-replica1"))
                               for h in only_primary]
    with pytest.raises(rf.RedisFailoverError, match="no running Redis replica to promote: redis-replica1 has no running host"):
        rf.members(stack)


def test_the_record_names_the_primary_and_a_missing_member_is_an_error(stack):
    assert stored_primary(stack.config, stack.name) == 0 and primary_node(stack.config, stack.name).name == "redis-primary"
    save_primary(stack.config, stack.name, 1)
    assert primary_node(stack.config, stack.name).name == "redis-replica1"
    save_primary(stack.config, stack.name, 2)
    with pytest.raises(LookupError, match="member 2, which stack 'onebox' does not have"):
        primary_node(stack.config, stack.name)


# --- on real redis-servers ------------------------------------------------------------------

class Pair:
    """Two redis-servers configured like the role's (ACL file, an included replication file)."""

    def __init__(self, root: Path) -> None:
        config = load_stack_config("onebox")
        hosts = tuple(onebox_hosts(config))
        self.ctx = RoleContext(config, "onebox", hosts[0], hosts, lambda name: f"secret-{name}")
        self.root, self.ports = root, free_ports(2)
        self.auth = root / "admin.auth"
        self.auth.write_text(ADMIN)
        (root / "users.acl").write_text("\n".join(acl_rules(["app pw"], ADMIN, "photostack:counter:*")) + "\n")
        self.procs: list[subprocess.Popen] = []

    def replication(self, port: int, primary: int | None) -> Path:
        """Render the role's replication file for `port` (a replica of `primary`, or a primary)."""
        path = self.root / f"replication-{port}.conf"
        path.write_text(self.ctx.template("redis", "replication.conf.j2", port=port, admin_user=ADMIN_USER,
                                          admin_password=double_quoted(ADMIN),
                                          primary=None if primary is None else f"127.0.0.1 {primary}"))
        return path

    def start(self, port: int, primary: int | None) -> None:
        data = self.root / str(port)
        data.mkdir()
        conf = self.root / f"redis-{port}.conf"
        conf.write_text(f"bind 127.0.0.1\nport {port}\ndir {data}\ndaemonize no\naclfile {self.root / 'users.acl'}\n"
                        f"include {self.replication(port, primary)}\n")
        self.procs.append(subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL))
        wait_port(port, self.procs[-1], 10, "redis")

    def admin(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, username=ADMIN_USER, password=ADMIN, decode_responses=True)

    def run(self, script: str) -> str:
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


@pytest.fixture
def pair(tmp_path):
    found = Pair(tmp_path)
    yield found
    found.stop()


def _synced(client: redis.Redis, key: str) -> bool:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info = client.info("replication")
        if info.get("master_link_status") == "up" and client.exists(key):
            return True
        time.sleep(0.05)
    return False


def test_promotion_and_the_replication_handler_swap_roles_in_place_keeping_the_data(pair):
    first, second = pair.ports
    pair.start(first, None)
    pair.start(second, first)
    old, new = pair.admin(first), pair.admin(second)
    old.set("feed:1", "x")
    old.rpush("photostack:session:abc", "kept")
    assert _synced(new, "photostack:session:abc")
    assert new.config_get("appendonly") == {"appendonly": "yes"} and old.config_get("save") == {"save": ""}
    runs = {port: pair.admin(port).info("server")["run_id"] for port in pair.ports}

    assert pair.run(commands.replication_offset("127.0.0.1", second, str(pair.auth))).strip().isdigit()
    pair.run(commands.promote("127.0.0.1", second, str(pair.auth)))
    assert new.info("replication")["role"] == "master"
    # The converge after the record changed: both replication files re-rendered, applied in place.
    pair.replication(second, None)
    pair.replication(first, second)
    for port in pair.ports:
        pair.run(apply_replication("127.0.0.1", port, str(pair.root / f"replication-{port}.conf"), str(pair.auth)))

    assert new.info("replication")["role"] == "master" and new.lrange("photostack:session:abc", 0, -1) == ["kept"]
    assert new.config_get("save") == {"save": ""} and new.config_get("appendonly") == {"appendonly": "no"}
    assert old.info("replication")["role"] == "slave" and old.info("replication")["master_port"] == second
    assert old.config_get("appendonly") == {"appendonly": "yes"} and old.config_get("save")["save"] == "900 1 300 10 60 10000"
    new.set("after", "1")
    assert _synced(old, "after")
    assert {port: pair.admin(port).info("server")["run_id"] for port in pair.ports} == runs  # nothing restarted


def test_the_replication_handler_fails_on_a_refused_setting(pair):
    first, _ = pair.ports
    pair.start(first, None)
    bad = pair.root / "bad.conf"
    bad.write_text("no-such-setting yes\n")
    done = subprocess.run(["bash", "-c", apply_replication("127.0.0.1", first, str(bad), str(pair.auth))],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "no-such-setting" in done.stderr


def test_drop_feeds_unlinks_every_feed_and_nothing_else(pair):
    first, _ = pair.ports
    pair.start(first, None)
    client = pair.admin(first)
    pipe = client.pipeline(transaction=False)
    for user in range(2500):  # more than one UNLINK batch
        pipe.rpush(f"feed:{user}", user, 0)
    pipe.set("photostack:session:abc", "kept")
    pipe.set("photostack:counter:likes", 7)
    pipe.execute()
    assert pair.run(commands.drop_feeds("127.0.0.1", first, str(pair.auth))).strip() == "2500"
    assert client.keys("feed:*") == [] and client.get("photostack:session:abc") == "kept"
    assert pair.run(commands.drop_feeds("127.0.0.1", first, str(pair.auth))).strip() == "0"


def test_the_replication_handler_waits_for_an_instance_still_starting(pair):
    """As after the restart handler: the instance answers only once it has loaded its data set."""
    import time

    first, second = pair.ports
    pair.start(first, None)
    pair.replication(second, first)
    handler = subprocess.Popen(["bash", "-c", apply_replication("127.0.0.1", second,
                                                                str(pair.root / f"replication-{second}.conf"),
                                                                str(pair.auth))],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)  # the handler is asking a port nothing listens on yet
    assert handler.poll() is None
    pair.start(second, first)
    assert handler.wait(timeout=30) == 0, handler.stdout.read()  # applied once it answered
    assert pair.admin(second).info("replication")["master_port"] == first
