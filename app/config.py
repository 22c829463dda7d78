"""The app's configuration: entirely from environment variables (rendered into /etc/photostack/app.env).

Read once per process by `app_config()`; the Django settings, the Celery app and the migration
runner all read the same object, so the web process and the worker cannot disagree.

| Variable                      | Meaning                                                    | Default               |
|-------------------------------|------------------------------------------------------------|-----------------------|
| DJANGO_SECRET_KEY             | Django's signing key (sessions, CSRF)                      | required by the web   |
| DJANGO_SECRET_KEY_FALLBACK    | while the key rotates, the other key signatures may carry  | unset                 |
|                               | (SECRET_KEY_FALLBACKS; `ops secret rotate djangoSecretKey`)|                       |
| PHOTOSTACK_STACK              | stack / Sentry environment name                            | `onebox`              |
| PHOTOSTACK_RELEASE            | deployed version (Sentry release)                          | `dev`                 |
| PHOTOSTACK_SHARDMAP           | path of the shard map JSON (infra/sharding.py)             | required              |
| PHOTOSTACK_DB_HOST / _PORT    | pgbouncer address                                          | `127.0.0.1` / `6432`  |
| PHOTOSTACK_DB_USER / _PASSWORD| pgbouncer credentials                                      | `photostack` / empty  |
| PHOTOSTACK_DB_POOL_MAX        | connections per physical shard pool per process (≥ threads)| `8`                   |
| PHOTOSTACK_MIGRATE_DSN        | DSN template for the migration runner, `{db}` = `shard3`,  | via pgbouncer         |
|                               | `{physical}` = `3` (e.g. direct to each primary)           |                       |
| PHOTOSTACK_ID_EPOCH_MS        | custom epoch of the 64-bit ids                             | Instagram's epoch     |
| PHOTOSTACK_REDIS_URL          | Redis: sessions, feeds, counters                           | `redis://127.0.0.1:6379/0` |
| PHOTOSTACK_MEMCACHED          | comma list of host:port                                    | `127.0.0.1:11211`     |
| PHOTOSTACK_BROKER_URL         | Celery broker (RabbitMQ)                                   | `amqp://guest@127.0.0.1:5672//` |
| PHOTOSTACK_STORAGE            | `local` or `s3`                                            | `local`               |
| PHOTOSTACK_MEDIA_ROOT         | local storage directory (nginx serves it)                  | `/srv/photostack/media` |
| PHOTOSTACK_MEDIA_URL          | URL prefix of stored images                                | `/media/`             |
| PHOTOSTACK_S3_BUCKET          | bucket for `s3` storage                                    | required for s3       |
| PHOTOSTACK_S3_ENDPOINT_URL    | S3 endpoint override (tests, S3-compatible stores)         | AWS                   |
| PHOTOSTACK_SENTRY_DSN         | Sentry DSN; unset or empty disables Sentry                 | unset                 |
| PHOTOSTACK_ALLOWED_HOSTS      | comma list for Django's ALLOWED_HOSTS                      | `*`                   |
| PHOTOSTACK_MAX_UPLOAD_BYTES   | largest accepted photo upload                              | `10485760`            |
| PHOTOSTACK_LOGIN_RATE_IP      | log-in attempts per client address, LIMIT/SECONDS          | `20/60`               |
| PHOTOSTACK_LOGIN_RATE_USER    | log-in attempts per username, LIMIT/SECONDS                | `10/300`              |
| PHOTOSTACK_SIGNUP_RATE_IP     | sign-ups per client address, LIMIT/SECONDS                 | `10/600`              |
| PHOTOSTACK_TRUSTED_PROXIES    | comma list of networks whose X-Real-IP header is the       | loopback and private  |
|                               | client's address (nginx)                                   | ranges                |
| PHOTOSTACK_QUEUE_BUDGET_MS    | longest wait since nginx passed a request on before it is  | `1500`                |
|                               | refused (503): app/admission.py                            |                       |
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from infra.config import INSTAGRAM_EPOCH_MS


class AppConfigError(ValueError):
    """A missing or malformed environment variable (the message names it)."""


# The app port is reachable only by nginx (loopback on one-box, the nginx security group on AWS,
# which lives in the VPC's private range), so these are where a believable X-Real-IP comes from.
DEFAULT_TRUSTED_PROXIES = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"


@dataclass(frozen=True)
class Rate:
    """At most `limit` events per `window_s` seconds (app/ratelimit.py)."""

    limit: int
    window_s: int


@dataclass(frozen=True)
class AppConfig:
    """Every setting of the web app, the worker and the migration runner."""

    secret_key: str
    secret_key_fallback: str
    stack: str
    release: str
    shardmap_path: Path
    db_host: str
    db_port: int
    db_user: str
    db_password: str
    db_pool_max: int
    migrate_dsn: str
    id_epoch_ms: int
    redis_url: str
    memcached: tuple[tuple[str, int], ...]
    broker_url: str
    storage: str
    media_root: Path
    media_url: str
    s3_bucket: str
    s3_endpoint_url: str | None
    sentry_dsn: str | None
    allowed_hosts: tuple[str, ...]
    max_upload_bytes: int
    login_rate_ip: Rate
    login_rate_user: Rate
    signup_rate_ip: Rate
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    queue_budget_ms: int

    def physical_dsn(self, dbname: str) -> str:
        """libpq conninfo of one pgbouncer database (e.g. `shard3`)."""
        parts = [f"host={self.db_host}", f"port={self.db_port}", f"dbname={dbname}", f"user={self.db_user}"]
        if self.db_password:
            parts.append(f"password={self.db_password}")
        return " ".join(parts)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise AppConfigError(f"{name} must be an integer, got {raw!r}") from None


def _rate(env: Mapping[str, str], name: str, default: str) -> Rate:
    raw = env.get(name) or default
    limit, sep, window = raw.partition("/")
    if not (sep and limit.isdigit() and window.isdigit() and int(limit) >= 1 and int(window) >= 1):
        raise AppConfigError(f"{name} must be LIMIT/SECONDS (e.g. {default}), got {raw!r}")
    return Rate(int(limit), int(window))


def _networks(env: Mapping[str, str], name: str, default: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    raw = env.get(name) or default
    try:
        return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in raw.split(",") if item.strip())
    except ValueError as exc:
        raise AppConfigError(f"{name}: {exc}") from None


def _memcached(raw: str) -> tuple[tuple[str, int], ...]:
    servers = []
    for item in filter(None, (s.strip() for s in raw.split(","))):
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            raise AppConfigError(f"PHOTOSTACK_MEMCACHED entry {item!r} is not host:port")
        servers.append((host, int(port)))
    if not servers:
        raise AppConfigError("PHOTOSTACK_MEMCACHED is empty")
    return tuple(servers)


def load_app_config(env: Mapping[str, str]) -> AppConfig:
    """Build the config from an environment mapping; raises AppConfigError naming the bad variable."""

    def required(name: str) -> str:
        value = env.get(name, "")
        if not value:
            raise AppConfigError(f"{name} is not set")
        return value

    storage = env.get("PHOTOSTACK_STORAGE", "local")
    if storage not in ("local", "s3"):
        raise AppConfigError(f"PHOTOSTACK_STORAGE must be 'local' or 's3', got {storage!r}")
    s3_bucket = env.get("PHOTOSTACK_S3_BUCKET", "")
    if storage == "s3" and not s3_bucket:
        raise AppConfigError("PHOTOSTACK_S3_BUCKET is not set (required when PHOTOSTACK_STORAGE=s3)")
    media_url = env.get("PHOTOSTACK_MEDIA_URL", "/media/")
    db_host = env.get("PHOTOSTACK_DB_HOST", "127.0.0.1")
    db_port = _int(env, "PHOTOSTACK_DB_PORT", 6432)
    db_user = env.get("PHOTOSTACK_DB_USER", "photostack")
    db_password = env.get("PHOTOSTACK_DB_PASSWORD", "")
    default_migrate = f"host={db_host} port={db_port} dbname={{db}} user={db_user}" + (
        f" password={db_password}" if db_password else ""
    )
    return AppConfig(
        secret_key=env.get("DJANGO_SECRET_KEY", ""),  # only the web process needs it (settings.py checks)
        secret_key_fallback=env.get("DJANGO_SECRET_KEY_FALLBACK", ""),
        stack=env.get("PHOTOSTACK_STACK", "onebox"),
        release=env.get("PHOTOSTACK_RELEASE", "dev"),
        shardmap_path=Path(required("PHOTOSTACK_SHARDMAP")),
        db_host=db_host,
        db_port=db_port,
        db_user=db_user,
        db_password=db_password,
        db_pool_max=_int(env, "PHOTOSTACK_DB_POOL_MAX", 8),
        migrate_dsn=env.get("PHOTOSTACK_MIGRATE_DSN") or default_migrate,
        id_epoch_ms=_int(env, "PHOTOSTACK_ID_EPOCH_MS", INSTAGRAM_EPOCH_MS),
        redis_url=env.get("PHOTOSTACK_REDIS_URL", "redis://127.0.0.1:6379/0"),
        memcached=_memcached(env.get("PHOTOSTACK_MEMCACHED", "127.0.0.1:11211")),
        broker_url=env.get("PHOTOSTACK_BROKER_URL", "amqp://guest@127.0.0.1:5672//"),
        storage=storage,
        media_root=Path(env.get("PHOTOSTACK_MEDIA_ROOT", "/srv/photostack/media")),
        media_url=media_url if media_url.endswith("/") else media_url + "/",
        s3_bucket=s3_bucket,
        s3_endpoint_url=env.get("PHOTOSTACK_S3_ENDPOINT_URL") or None,
        sentry_dsn=env.get("PHOTOSTACK_SENTRY_DSN") or None,
        allowed_hosts=tuple(h.strip() for h in env.get("PHOTOSTACK_ALLOWED_HOSTS", "*").split(",") if h.strip()),
        max_upload_bytes=_int(env, "PHOTOSTACK_MAX_UPLOAD_BYTES", 10 * 1024 * 1024),
        login_rate_ip=_rate(env, "PHOTOSTACK_LOGIN_RATE_IP", "20/60"),
        login_rate_user=_rate(env, "PHOTOSTACK_LOGIN_RATE_USER", "10/300"),
        signup_rate_ip=_rate(env, "PHOTOSTACK_SIGNUP_RATE_IP", "10/600"),
        trusted_proxies=_networks(env, "PHOTOSTACK_TRUSTED_PROXIES", DEFAULT_TRUSTED_PROXIES),
        queue_budget_ms=_int(env, "PHOTOSTACK_QUEUE_BUDGET_MS", 1500),
    )


@functools.cache
def app_config() -> AppConfig:
    """This process's config, read from os.environ on first use."""
    return load_app_config(os.environ)
