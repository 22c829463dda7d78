"""The Munin plugin scripts, run as munin-node runs them: config, values, U when the service is down."""

from __future__ import annotations

import socket

import pytest

from tests.monitoring.conftest import PLUGINS, parse_values, run_plugin

CLOSED = "1"  # nothing listens on port 1 on loopback

# Every plugin, with settings that point it at a service that is not there.
DOWN = {
    "photos_per_second": {"port": CLOSED},
    "likes_per_second": {"port": CLOSED},
    "signups_per_minute": {"port": CLOSED},
    "redis_": {"port": CLOSED},
    "pgbouncer": {"host": "127.0.0.1", "port": CLOSED},
    "postgres_connections_": {"host": "127.0.0.1", "port": CLOSED},
    "postgres_replication_": {"host": "127.0.0.1", "port": CLOSED, "replica": "shard0r1"},
    "postgres_archive_": {"host": "127.0.0.1", "port": CLOSED},
    "postgres_shard_rows_": {"host": "127.0.0.1", "port": CLOSED, "database": "shard0"},
    "postgres_shard_size_": {"host": "127.0.0.1", "port": CLOSED, "database": "shard0"},
    "pgbackrest_backup_": {"stanza": "no_such_stanza"},
    "pgbackrest_drill_": {"host": "127.0.0.1", "port": CLOSED, "stanza": "shard0"},
    "rabbitmq": {"url": f"http://127.0.0.1:{CLOSED}"},
    "celery": {"url": f"http://127.0.0.1:{CLOSED}"},
    "nginx": {"status_url": f"http://127.0.0.1:{CLOSED}/nginx_status", "access_log": "/nonexistent/access.log"},
    "gunicorn_": {"port": CLOSED},
}


def test_every_plugin_script_is_covered():
    assert sorted(p.name for p in PLUGINS.iterdir()) == sorted(DOWN)


@pytest.mark.parametrize("plugin", sorted(DOWN))
def test_a_plugin_whose_service_is_down_reports_U(plugin, tmp_path):
    config, _ = run_plugin(plugin, "config", env=DOWN[plugin], tmp=tmp_path)
    fields = {line.split(".")[0] for line in config.splitlines() if ".label " in line}
    output, elapsed = run_plugin(plugin, env={**DOWN[plugin], "MUNIN_PLUGSTATE": str(tmp_path)}, tmp=tmp_path)
    assert parse_values(output) == {field: "U" for field in fields}
    assert elapsed < 2.0  # fails fast: no hanging on a dead service


def test_photos_per_second_counts_the_photos_posted_in_a_window(redis_port):
    redis = socket.create_connection(("127.0.0.1", redis_port))
    env = {"port": str(redis_port), "key": "photostack:counter:photos_posted"}

    def incr(count: int) -> None:
        redis.sendall(b"INCRBY photostack:counter:photos_posted %d\r\n" % count)
        assert redis.recv(64).startswith(b":")

    incr(5)  # photos posted before the window
    before = int(parse_values(run_plugin("photos_per_second", env=env)[0])["photos"])
    incr(17)
    after = int(parse_values(run_plugin("photos_per_second", env=env)[0])["photos"])
    # DERIVE: Munin divides this difference by the time between its two fetches.
    assert after - before == 17
    redis.close()


def test_counter_fields_are_derive_with_limits_from_the_environment():
    config, _ = run_plugin("photos_per_second", "config", env={"photos_warning": "50", "photos_critical": "100"})
    assert "graph_title Photos posted per second" in config
    assert "graph_category photostack" in config
    for line in ("photos.type DERIVE", "photos.min 0", "photos.warning 50", "photos.critical 100"):
        assert line in config.splitlines()
    signups, _ = run_plugin("signups_per_minute", "config")
    assert {"graph_period minute", "graph_vlabel sign-ups / ${graph_period}"} <= set(signups.splitlines())


@pytest.mark.parametrize("plugin", sorted(DOWN))
def test_every_graph_says_what_it_shows_and_rates_read_as_plain_numbers(plugin, tmp_path):
    link = {"redis_": "redis_primary", "gunicorn_": "gunicorn_app_0", "postgres_connections_": "postgres_connections_0_primary",
            "postgres_replication_": "postgres_replication_0_replica1", "postgres_shard_rows_": "postgres_shard_rows_0",
            "postgres_shard_size_": "postgres_shard_size_0"}.get(plugin)
    config, _ = run_plugin(plugin, "config", env=DOWN[plugin], link_as=link, tmp=tmp_path)
    settings = dict(line.split(" ", 1) for line in config.splitlines())
    assert len(settings["graph_title"]) > 10 and len(settings["graph_info"]) > 30, settings
    if link:  # a wildcard plugin names its instance
        assert link.removeprefix(plugin) in settings["graph_title"]
    fields = settings["graph_order"].split()
    assert all(settings.get(f"{f}.label") and settings.get(f"{f}.info") for f in fields), settings
    rates = [settings.get(f"{f}.type") == "DERIVE" for f in fields]
    if any(rates):  # a rate: per second or per minute, said in the label
        assert settings["graph_period"] in ("second", "minute") and "${graph_period}" in settings["graph_vlabel"]
    if all(rates):  # rates only: never "32.74m" for 0.03274
        assert settings["graph_scale"] == "no"


def test_the_business_overview_holds_the_business_graphs():
    overview = {p.name for p in PLUGINS.iterdir()
                if "graph_category photostack" in run_plugin(p.name, "config", env=DOWN[p.name])[0]}
    assert overview == {"photos_per_second", "likes_per_second", "signups_per_minute", "nginx", "rabbitmq"}


def test_redis_plugin_reads_a_live_instance(redis_port, tmp_path):
    with socket.create_connection(("127.0.0.1", redis_port)) as client:  # 3 commands, whatever ran before
        client.sendall(b"PING\r\nPING\r\nPING\r\n")
        received = b""
        while received.count(b"+PONG") < 3:
            received += client.recv(100)
    values = parse_values(run_plugin("redis_", env={"port": str(redis_port)}, link_as="redis_primary",
                                     tmp=tmp_path)[0])
    assert int(values["used_memory"]) > 100_000
    assert int(values["clients"]) >= 1
    assert int(values["ops"]) >= 3
    # A wrong password is a service we cannot read, not a crash.
    denied = parse_values(run_plugin("redis_", env={"port": str(redis_port), "password": "wrong"})[0])
    assert set(denied.values()) == {"U"}


def test_nginx_counts_5xx_answers_incrementally_and_survives_rotation(tmp_path):
    log = tmp_path / "access.log"
    env = {"status_url": "http://127.0.0.1:1/nginx_status", "access_log": str(log), "MUNIN_PLUGSTATE": str(tmp_path)}

    def line(status: int) -> str:
        return f'127.0.0.1 [21/Nov/2026:15:00:00 +0000] "GET /p?q=\\"x\\" HTTP/1.1" {status} 12 0.001 0.001 "-"\n'

    log.write_text(line(200) + line(502) + line(404) + line(500))
    assert parse_values(run_plugin("nginx", env=env)[0])["errors_5xx"] == "2"
    with log.open("a") as f:
        f.write(line(503) + line(200) + '127.0.0.1 [21/Nov/2026:15:00:01 +0000] "GET / HTTP/1.1" 50')
    assert parse_values(run_plugin("nginx", env=env)[0])["errors_5xx"] == "3"  # half line not yet counted
    with log.open("a") as f:
        f.write('3 1 0.001 0.001 "-"\n')
    assert parse_values(run_plugin("nginx", env=env)[0])["errors_5xx"] == "4"
    log.unlink()
    log.write_text(line(500))  # rotated: a new file, read from its start
    assert parse_values(run_plugin("nginx", env=env)[0])["errors_5xx"] == "5"
