"""The runbooks' queue and cache commands, run as the on-call would (`python -m ops ...`) on the
real one-box: queue drain/requeue moves every message and back in order, cache flush empties
Memcached."""

from __future__ import annotations

import subprocess
import sys
import uuid

import amqp
import pytest
from pymemcache.client.base import Client as Memcache

from roles.rabbitmq.role import login_name

pytestmark = [pytest.mark.onebox, pytest.mark.drill]


def ops(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ops", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _channel(stack):
    """A channel as the app's broker login (named from its password, as the app's own)."""
    password = stack.secret("rabbitmqPassword")
    user = login_name(stack.context(stack.hosts[0]).defaults("rabbitmq")["rabbitmq_user"], password)
    conn = amqp.Connection(f"127.0.0.1:{stack.config.onebox.rabbitmq_port}", userid=user,
                           password=password, virtual_host=stack.config.rabbitmq.vhost)
    conn.connect()
    return conn, conn.channel()


def test_queue_drain_and_requeue_move_every_message_and_back_in_order(converged):
    queue = f"drill-{uuid.uuid4().hex[:8]}"  # not a queue the workers consume
    conn, ch = _channel(converged)
    try:
        for name in (queue, f"{queue}.parked"):
            ch.queue_declare(name, durable=True, auto_delete=False)
        bodies = [f"task {n}" for n in range(25)]
        for body in bodies:
            ch.basic_publish(amqp.Message(body, delivery_mode=2), exchange="", routing_key=queue)
        assert "moved 25 message(s) from" in ops("queue", "drain", "--queue", queue)
        assert ch.basic_get(queue) is None  # nothing waiting on the drained queue
        assert "moved 25 message(s) from" in ops("queue", "requeue", "--queue", queue)
        back = []
        while (msg := ch.basic_get(queue, no_ack=True)) is not None:
            back.append(msg.body.decode() if isinstance(msg.body, bytes) else msg.body)
        assert back == bodies
    finally:
        for name in (queue, f"{queue}.parked"):
            ch.queue_delete(name)
        conn.close()


def test_cache_flush_empties_memcached(converged):
    cache = Memcache(("127.0.0.1", converged.config.onebox.memcached_base_port))
    key = f"drill-{uuid.uuid4().hex}"
    cache.set(key, b"cached")
    assert cache.get(key) == b"cached"
    assert "flushed memcached-0" in ops("cache", "flush")
    assert cache.get(key) is None
