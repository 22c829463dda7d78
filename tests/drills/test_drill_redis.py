"""Drill: restart the Redis primary (it keeps no data on disk: feeds, sessions, counters are
gone) under GET load; feeds come back, rebuilt from the shards on the next read."""

from __future__ import annotations

import pytest
import redis

from ops import maintenance
from tests.drills.appclient import ApiClient
from tests.drills.faults import nginx_port, wait_for
from tests.drills.httpload import HttpLoad

pytestmark = [pytest.mark.onebox, pytest.mark.drill]


def _redis(stack, admin: bool = False) -> redis.Redis:
    """The app's login, or Redis's admin login (INFO is admin-only)."""
    return redis.Redis(host="127.0.0.1", port=stack.config.onebox.redis_base_port, username="admin" if admin else None,
                       password=stack.secret("redisAdminPassword" if admin else "redisPassword"))


def test_redis_restart_feeds_rebuilt_from_shards(converged):
    stack = converged
    port = nginx_port(stack)
    reader, author = ApiClient(port).sign_up("feedreader"), ApiClient(port).sign_up("feedauthor")
    assert reader.call("POST", f"/api/users/{author.username}/follow")[0] == 200
    posted = sorted((int(author.post_photo(f"r{i}")[1]["id"]) for i in range(3)), reverse=True)
    mine = int(reader.post_photo("mine")[1]["id"])
    wanted = sorted([*posted, mine], reverse=True)
    wait_for(lambda: reader.feed_ids() == wanted, 30)  # fanned out by the worker

    user_page = f"/api/users/{author.username}"
    load = HttpLoad(port, ["/health", user_page], clients=2, max_seconds=60).start()
    try:
        restarted = maintenance.replace_node(stack, "redis-primary")
        assert not _redis(stack).exists(f"feed:{reader.user_id}")  # the data really went
        # Sessions lived in Redis too: log in again.
        wait_for(lambda: reader.log_in() == 200, 30)
        rebuilt = reader.feed_ids()
        load.wait_for_more(100)  # pages keep answering after the restart
    finally:
        result = load.stop()
    print(f"\n{restarted}; load: {result.describe()}")
    # /health said 503 while Redis was away (the load balancer must know), and that is all that
    # failed: a page that needs no Redis kept working (nginx did not take the 503s as dead servers).
    assert set(result.errors) == {"/health: HTTP 503"}, result.errors
    assert rebuilt == wanted
    assert [int(v) for v in _redis(stack).lrange(f"feed:{reader.user_id}", 0, -1)] == [*wanted, 0]
    # The replica resynced from the restarted primary (converge checks it runs).
    wait_for(lambda: _redis(stack, admin=True).info("replication")["connected_slaves"] >= 1, 30)
