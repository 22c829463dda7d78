"""Drill: restart RabbitMQ (`ops replace-node rabbitmq-0`) while photos are being posted.

Measured: every photo the app acknowledged (201) gets its thumbnail task run — durable queues,
persistent messages, publisher confirms and acks_late mean no acknowledged task is lost. Posts
the app could not queue while the broker was down are answered 503 and leave nothing behind:
each poster's shard holds exactly the photos acknowledged to them."""

from __future__ import annotations

import threading
import time

import pytest

import psycopg

from infra.config import INSTAGRAM_EPOCH_MS
from infra.sharding import decode_id, physical_db, schema_name
from infra.shardstore import stored_shard_map
from ops import maintenance
from tests.drills.appclient import ApiClient
from tests.drills.faults import nginx_port, wait_for

pytestmark = [pytest.mark.onebox, pytest.mark.drill]


def stored_photo_ids(stack, user_id: int) -> set[int]:
    """The ids of a user's photos, straight from their shard (through pgbouncer)."""
    logical = decode_id(user_id, INSTAGRAM_EPOCH_MS).logical_shard
    physical = stored_shard_map(stack.config, stack.name).physical_of(logical)
    dsn = (f"host=127.0.0.1 port={stack.config.onebox.pgbouncer_port} dbname={physical_db(physical)} "
           f"user=photostack password={stack.secret('dbPassword')}")
    with psycopg.connect(dsn, prepare_threshold=None, autocommit=True) as conn:
        rows = conn.execute(f"SELECT id FROM {schema_name(logical)}.photos WHERE user_id = %s", (user_id,))
        return {row[0] for row in rows}


def test_rabbitmq_restart_loses_no_acknowledged_task(converged):
    stack = converged
    port = nginx_port(stack)
    posters = [ApiClient(port).sign_up("mqdrill") for _ in range(3)]
    acked: list[tuple[ApiClient, int]] = []
    refused = []
    stop = threading.Event()

    def post(client: ApiClient) -> None:
        for n in range(400):  # bounded: at most 400 posts per client
            if stop.is_set():
                return
            status, body = client.post_photo(f"mq {n}")
            (acked.append((client, int(body["id"]))) if status == 201 else refused.append(status))
            time.sleep(0.05)

    threads = [threading.Thread(target=post, args=(c,), daemon=True) for c in posters]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 20, 60)  # posting runs before the restart
    before = len(acked)
    restarted = maintenance.replace_node(stack, "rabbitmq-0")
    wait_for(lambda: len(acked) >= before + 20, 60)  # and resumes after it
    stop.set()
    for t in threads:
        t.join(timeout=30)

    def missing() -> list[int]:
        return [pid for client, pid in acked
                if not client.call("GET", f"/api/photos/{pid}")[1].get("thumbnail_url")]

    left = missing()
    deadline = time.monotonic() + 90
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = [pid for pid in left if pid in set(missing())]
    print(f"\n{restarted}: {len(acked)} posts acknowledged ({before} before the restart), "
          f"{len(refused)} refused while the broker was away, {len(left)} without their task run")
    assert left == []
    assert set(refused) <= {503}, refused
    for client in posters:  # refused posts were not kept: no photo without its task
        assert stored_photo_ids(stack, client.user_id) == {pid for c, pid in acked if c is client}
