"""Config from the environment: defaults, and one clear error naming a bad variable."""

from __future__ import annotations

import pytest

from app.config import AppConfigError, load_app_config
from infra.config import INSTAGRAM_EPOCH_MS

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


def test_several_memcached_servers_spread_keys():
    """Keys spread over servers deterministically (rendezvous hashing with CRC32)."""
    from app.clients import _crc32
    from pymemcache.client.rendezvous import RendezvousHash

    ring = RendezvousHash(nodes=["a:1", "b:1", "c:1"], hash_function=_crc32)
    placed = [ring.get_node(f"photo:{i}") for i in range(300)]
    assert set(placed) == {"a:1", "b:1", "c:1"}
    assert placed == [RendezvousHash(nodes=["a:1", "b:1", "c:1"], hash_function=_crc32).get_node(f"photo:{i}") for i in range(300)]
