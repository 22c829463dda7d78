"""Redis, Memcached and RabbitMQ on the one-box, over real connections."""

from __future__ import annotations

import socket
import time

import amqp
import pytest
import redis
from pymemcache.client.base import Client as Memcache

from roles.rabbitmq.role import login_name

pytestmark = pytest.mark.onebox


def _redis(datatier, port: int, password: str | None = None, admin: bool = False) -> redis.Redis:
    """The app's login (or, with `admin`, Redis's admin login: CONFIG and INFO are admin-only)."""
    secret = datatier.secret("redisAdminPassword" if admin else "redisPassword") if password is None else password
    return redis.Redis(host=datatier.box.address, port=port, username="admin" if admin else None,
                       password=secret or None, socket_timeout=5)


def test_redis_replica_follows_the_primary(datatier):
    primary_port = datatier.box.redis_base_port
    primary, replica = _redis(datatier, primary_port), _redis(datatier, primary_port + 1)
    key = f"photostack-test-{time.time_ns()}"
    primary.set(key, "hello", ex=60)
    deadline = time.monotonic() + 1.0
    while replica.get(key) != b"hello":
        assert time.monotonic() < deadline, "value not on the replica after 1 s"
        time.sleep(0.01)
    with pytest.raises(redis.ReadOnlyError):
        replica.set(key, "nope")
    primary.delete(key)


def test_redis_persists_on_the_replica_only_with_configured_memory(datatier):
    primary = _redis(datatier, datatier.box.redis_base_port, admin=True)
    replica = _redis(datatier, datatier.box.redis_base_port + 1, admin=True)
    assert primary.config_get("save")["save"] == "" and primary.config_get("appendonly")["appendonly"] == "no"
    assert replica.config_get("save")["save"] != "" and replica.config_get("appendonly")["appendonly"] == "yes"
    for server in (primary, replica):
        assert int(server.config_get("maxmemory")["maxmemory"]) == datatier.stack.config.redis.maxmemory_mb * 1024 * 1024
        assert server.config_get("maxmemory-policy")["maxmemory-policy"] == datatier.stack.config.redis.maxmemory_policy


@pytest.mark.parametrize("password", ["wrong-password", ""])
def test_redis_refuses_bad_passwords(datatier, password):
    with pytest.raises(redis.AuthenticationError):
        _redis(datatier, datatier.box.redis_base_port, password).set("x", "y")


def test_memcached_serves_on_loopback_with_configured_memory(datatier):
    client = Memcache((datatier.box.address, datatier.box.memcached_base_port), connect_timeout=5, timeout=5)
    client.set("photostack-test", b"cached", expire=60)
    assert client.get("photostack-test") == b"cached"
    stats = client.stats("settings")
    assert int(stats[b"maxbytes"]) == datatier.stack.config.memcached.memory_mb * 1024 * 1024
    client.close()


def test_memcached_is_not_on_other_addresses(datatier):
    # Bound to the one-box address only: another loopback address of this host is refused.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", datatier.box.memcached_base_port), timeout=2).close()


def _amqp(datatier, user: str, password: str | None = None) -> amqp.Connection:
    secret = datatier.secret("rabbitmqPassword") if password is None else password
    conn = amqp.Connection(
        f"{datatier.box.address}:{datatier.box.rabbitmq_port}", userid=user, password=secret,
        virtual_host=datatier.stack.config.rabbitmq.vhost, connect_timeout=5,
    )
    conn.connect()
    return conn


def test_rabbitmq_app_user_publishes_and_consumes(datatier):
    conn = _amqp(datatier, login_name("photostack", datatier.secret("rabbitmqPassword")))
    channel = conn.channel()
    queue = f"photostack-test-{time.time_ns()}"
    channel.queue_declare(queue, auto_delete=True)
    channel.basic_publish(amqp.Message("ping"), routing_key=queue)
    deadline = time.monotonic() + 2
    message = None
    while message is None and time.monotonic() < deadline:
        message = channel.basic_get(queue, no_ack=True)
    assert message is not None and message.body == "ping"
    conn.close()


@pytest.mark.parametrize("user,password", [("photostack", "wrong-password"), ("photostack", ""), ("guest", "guest")])
def test_rabbitmq_refuses_bad_logins_and_guest(datatier, user, password):
    with pytest.raises(amqp.exceptions.AccessRefused):
        _amqp(datatier, user, password)


def test_rabbitmq_and_epmd_listen_on_loopback_only(datatier):
    listening = {line.split()[3] for line in _ss() if line.split()[3].rsplit(":", 1)[1] in ("5672", "4369", "25672")}
    assert listening and all(addr.startswith(("127.0.0.1:", "[::1]:")) for addr in listening), listening


def _ss() -> list[str]:
    import subprocess

    return subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout.splitlines()
