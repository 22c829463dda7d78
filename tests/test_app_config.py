"""Config from the environment: defaults, one clear error naming a bad variable, and the app's own
Memcached client spreading keys over several real servers."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from pymemcache.client.base import Client

from app.clients import memcache_client
from app.config import AppConfigError, app_config, load_app_config
from infra.config import INSTAGRAM_EPOCH_MS
from tests.app_services import REPO, free_ports, wait_port

BASE = {"PHOTOSTACK_SHARDMAP": "/etc/photostack/shardmap.json"}


def test_defaults():
    config = load_app_config(BASE)
    assert config.storage == "local" and config.media_url == "/media/"
    assert config.id_epoch_ms == INSTAGRAM_EPOCH_MS
    assert config.sentry_dsn is None
    assert config.memcached == (("127.0.0.1", 11211),)
    assert config.migrate_dsn == "host=127.0.0.1 port=6432 dbname={db} user=photostack"
    assert config.physical_dsn("shard1") == "host=127.0.0.1 port=6432 dbname=shard1 user=photostack"
    assert (config.login_rate_ip.limit, config.login_rate_ip.window_s) == (20, 60)


def test_values_are_read():
    config = load_app_config({
        **BASE, "PHOTOSTACK_MEMCACHED": "10.0.0.1:11211, 10.0.0.2:11212", "PHOTOSTACK_DB_PASSWORD": "pw",
        "PHOTOSTACK_STORAGE": "s3", "PHOTOSTACK_S3_BUCKET": "b", "PHOTOSTACK_MEDIA_URL": "https://cdn/x",
        "PHOTOSTACK_SENTRY_DSN": "http://k@127.0.0.1:9/1",
    })
    assert config.memcached == (("10.0.0.1", 11211), ("10.0.0.2", 11212))
    assert config.physical_dsn("shard0").endswith("password=pw")
    assert config.media_url == "https://cdn/x/"
    assert config.sentry_dsn == "http://k@127.0.0.1:9/1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "PHOTOSTACK_SHARDMAP is not set"),
        ({**BASE, "PHOTOSTACK_DB_PORT": "pgbouncer"}, "PHOTOSTACK_DB_PORT must be an integer, got 'pgbouncer'"),
        ({**BASE, "PHOTOSTACK_STORAGE": "ftp"}, "PHOTOSTACK_STORAGE must be 'local' or 's3', got 'ftp'"),
        ({**BASE, "PHOTOSTACK_STORAGE": "s3"}, "PHOTOSTACK_S3_BUCKET is not set (required when PHOTOSTACK_STORAGE=s3)"),
        ({**BASE, "PHOTOSTACK_MEMCACHED": "cachehost"}, "PHOTOSTACK_MEMCACHED entry 'cachehost' is not host:port"),
        ({**BASE, "PHOTOSTACK_LOGIN_RATE_IP": "20 per minute"},
         "PHOTOSTACK_LOGIN_RATE_IP must be LIMIT/SECONDS (e.g. 20/60), got '20 per minute'"),
        ({**BASE, "PHOTOSTACK_SIGNUP_RATE_IP": "10/0"}, "PHOTOSTACK_SIGNUP_RATE_IP must be LIMIT/SECONDS (e.g. 10/600), got '10/0'"),
        ({**BASE, "PHOTOSTACK_TRUSTED_PROXIES": "nginx"},
         "PHOTOSTACK_TRUSTED_PROXIES: 'nginx' does not appear to be an IPv4 or IPv6 network"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(AppConfigError) as caught:
        load_app_config(env)
    assert str(caught.value) == message


@pytest.fixture
def three_memcached(monkeypatch):
    """Three real memcached servers, and the app's config pointing at them (PHOTOSTACK_MEMCACHED)."""
    ports = free_ports(3)
    procs = [subprocess.Popen(["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-u", "memcache", "-m", "8"],
                              start_new_session=True) for port in ports]
    try:
        for port, proc in zip(ports, procs):
            wait_port(port, proc, 10, "memcached")
        env = {**BASE, "PHOTOSTACK_MEMCACHED": ",".join(f"127.0.0.1:{port}" for port in ports)}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        app_config.cache_clear(), memcache_client.cache_clear()
        yield ports, procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        app_config.cache_clear(), memcache_client.cache_clear()


KEYS = [f"photo:{i}" for i in range(300)]


def test_the_apps_memcached_client_spreads_keys_and_every_process_agrees(three_memcached):
    ports, procs = three_memcached
    client = memcache_client()
    client.set_many({key: key for key in KEYS}, expire=300)
    servers = {port: Client(("127.0.0.1", port)) for port in ports}
    holders = {key: [port for port, server in servers.items() if server.get(key) == key.encode()] for key in KEYS}
    assert all(len(found) == 1 for found in holders.values())  # each key on exactly one server
    per_server = Counter(found[0] for found in holders.values())
    assert set(per_server) == set(ports) and min(per_server.values()) >= 50  # spread over all three
    # Another process (another gunicorn worker, a Celery worker) finds every key where this one put it.
    script = "from app.clients import memcache_client as m; c = m(); got = c.get_many(%r); print(sum(v == k.encode() for k, v in got.items()))" % KEYS
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert other.stdout.strip() == "300", other.stderr
    # A server dies: its keys miss (no error on the request path); no other key moves.
    procs[0].kill()
    procs[0].wait()
    memcache_client.cache_clear()
    client = memcache_client()
    for key, (port,) in holders.items():
        assert client.get_many([key]).get(key) == (None if port == ports[0] else key.encode()), key
