"""Least privilege on the one-box's real Redis, pgbouncer and RabbitMQ: the app's Redis login cannot
reconfigure, flush or inspect the server; munin's can only read; the Erlang cookie (full control
of the broker) comes from its own secret, not from the app's broker password."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import redis

from roles.redis.acl import munin_password

pytestmark = pytest.mark.onebox


def login(stack, username: str | None, password: str) -> redis.Redis:
    return redis.Redis(host=stack.config.onebox.address, port=stack.config.onebox.redis_base_port,
                       username=username, password=password, socket_timeout=5)


def test_the_apps_redis_login_reads_and_writes_but_nothing_dangerous(onebox) -> None:
    app = login(onebox, None, onebox.secret("redisPassword"))
    app.set("photostack:security-test", "1", ex=60)
    assert app.get("photostack:security-test") == b"1"
    for dangerous in (lambda: app.config_get("requirepass"), app.flushall, lambda: app.info(),
                      lambda: app.execute_command("MODULE", "LIST"), lambda: app.acl_list(), lambda: app.keys("*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            dangerous()


def test_munins_redis_login_only_reads_counters_and_info(onebox) -> None:
    app = login(onebox, None, onebox.secret("redisPassword"))
    app.set("photostack:security-test", "secret-data", ex=60)
    munin = login(onebox, "munin", munin_password(onebox.secret("redisPassword")))

    assert "used_memory" in munin.info()
    munin.get("photostack:counter:likes")  # allowed (may be unset)
    with pytest.raises(redis.exceptions.NoPermissionError):
        munin.get("photostack:security-test")
    with pytest.raises(redis.exceptions.NoPermissionError):
        munin.set("photostack:counter:likes", "0")


def test_redis_config_holds_no_plain_password(onebox) -> None:
    port = onebox.config.onebox.redis_base_port
    conf = Path(f"/etc/redis/redis-{port}.conf").read_text()
    users = Path(f"/etc/redis/users-{port}.acl").read_text()
    assert onebox.secret("redisPassword") not in conf + users
    assert hashlib.sha256(onebox.secret("redisPassword").encode()).hexdigest() in users


def test_the_erlang_cookie_is_not_derived_from_the_broker_password(onebox) -> None:
    cookie = Path("/var/lib/rabbitmq/.erlang.cookie").read_text().strip()
    derived = hashlib.sha256(f"photostack-erlang-cookie:{onebox.secret('rabbitmqPassword')}".encode())
    assert cookie and cookie != derived.hexdigest().upper()[:40]


def test_pgbouncers_monitoring_login_reads_stats_but_cannot_administer(onebox) -> None:
    import psycopg

    from roles.postgres.auth import STATS_USER, stats_password

    box = onebox.config.onebox
    with psycopg.connect(host=box.address, port=box.pgbouncer_port, dbname="pgbouncer", user=STATS_USER,
                         password=stats_password(onebox.secret("pgbouncerAdminPassword")),
                         autocommit=True, prepare_threshold=None) as stats:
        assert stats.execute("SHOW POOLS").fetchall()
        with pytest.raises(psycopg.Error, match="admin"):
            stats.execute("PAUSE")
