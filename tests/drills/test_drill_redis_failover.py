"""Drill: `ops redis-failover` on the real one-box: the replica (6380) takes over with the data, so
a logged-in user stays logged in; the feeds are dropped and rebuilt from the shards on read; the
old primary (6379) follows as a replica; nothing is left for a converge. Then the same command
fails back, leaving the box as it found it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from roles.redis.primary import stored_primary
from tests.drills.appclient import ApiClient
from tests.drills.desired import assert_converged
from tests.drills.faults import nginx_port, wait_for

pytestmark = [pytest.mark.onebox, pytest.mark.drill]


def _admin(stack, port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, username="admin", password=stack.secret("redisAdminPassword"))


def _failover() -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "ops", "redis-failover"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _replica_of(stack, port: int, primary: int) -> bool:
    info = _admin(stack, port).info("replication")
    return info["role"] == "slave" and info["master_port"] == primary and info["master_link_status"] == "up"


def test_redis_failover_keeps_sessions_rebuilds_feeds_and_leaves_nothing_to_converge(converged):
    stack = converged
    base = stack.config.onebox.redis_base_port
    before = stored_primary(stack.config, stack.name)  # 0 unless an earlier failover stayed
    first, second = base + before, base + 1 - before
    api = nginx_port(stack)
    reader, author = ApiClient(api).sign_up("rfreader"), ApiClient(api).sign_up("rfauthor")
    assert reader.call("POST", f"/api/users/{author.username}/follow")[0] == 200
    wanted = sorted((int(author.post_photo(f"rf{i}")[1]["id"]) for i in range(3)), reverse=True)
    wait_for(lambda: reader.feed_ids() == wanted, 30)  # fanned out by the worker
    wait_for(lambda: _replica_of(stack, second, first), 30)

    done = _failover()
    print(done.stdout)
    assert stored_primary(stack.config, stack.name) == 1 - before
    assert _admin(stack, second).info("replication")["role"] == "master"
    assert not _admin(stack, second).exists(f"feed:{reader.user_id}")  # dropped ...
    assert reader.feed_ids() == wanted  # ... rebuilt from the shards, for a user still logged in
    wait_for(lambda: _replica_of(stack, first, second), 30)
    assert_converged(stack, "ops redis-failover")

    _failover()  # back, as the runbook moves the primary back
    assert stored_primary(stack.config, stack.name) == before
    assert reader.feed_ids() == wanted
    wait_for(lambda: _replica_of(stack, second, first), 30)
