"""The stack config: the `photostack:` keys of `Pulumi.<stack>.yaml`, parsed once into one typed model.

Everything that needs topology (the Pulumi program, the one-box, the converge engine, the app's
shard router, the runbooks) reads a `StackConfig`; nothing else parses the YAML.
Keys are camelCase in YAML (Pulumi's convention) and snake_case in Python.
Bad input raises `ConfigError`, which carries one line per problem naming the key path; every
problem found is reported, not only the first. Types are strict (a YAML `yes` is not a count, a
number is not a name); the limits are AWS's documented ones (infra/aws_names.py) and, for counts,
bounds no real stack reaches, so a typo cannot make the program build millions of nodes.
Rules that span several keys (zones of the region, role overrides) are in infra/config_checks.py,
those of one target kind (subnet sizes, one-box ports, which secrets, the distro's PostgreSQL) in
that target's rules (infra/targets/kinds.py); reading the file (encodings, duplicate keys, YAML 1.1 words) in
infra/config_file.py.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from infra import schedule
from infra.config_errors import ConfigError, check_stack_name, show

if TYPE_CHECKING:
    from infra.targets.kinds import KindRules


NAMESPACE = "photostack"
REPO_ROOT = Path(__file__).resolve().parent.parent

# Instagram's id layout: 41 bits of milliseconds | 13 bits logical shard | 10 bits sequence.
SHARD_ID_BITS = 13
MAX_LOGICAL_SHARDS = 1 << SHARD_ID_BITS
TIMESTAMP_BITS = 41
# Instagram's published epoch constant (2011-08-24T21:07:01.721Z), not 2011-01-01 as its prose says.
INSTAGRAM_EPOCH_MS = 1314220021721

# Secrets: never plain text in the YAML. On AWS they are Pulumi secrets (`secure:` values);
# on one-box they live in the git-ignored state dir (see infra/secrets.py).
# Service passwords: generated on one-box, Pulumi secrets on AWS.
GENERATED_SECRETS = (
    "dbPassword",
    "replicationPassword",
    "pgbouncerAdminPassword",
    "redisPassword",
    "redisAdminPassword",
    "rabbitmqPassword",
    "erlangCookie",
    "scramSaltKey",
    "djangoSecretKey",
)
# Every secret: the service passwords plus the integrations' keys.
# `sentryAuthToken` is optional: with it `ops deploy` creates Sentry releases and deploys.
SECRET_KEYS = GENERATED_SECRETS + ("pagerdutyRoutingKey", "pingdomToken", "sentryDsn", "sentryAuthToken",
                                   "dashboardOidcClientSecret", "dashboardPassword")

# Config namespaces a stack file may use: ours, Pulumi's own, and the providers the program uses.
PROVIDER_NAMESPACES = {"aws": "pulumi_aws", "pagerduty": "pulumi_pagerduty", "sentry": "pulumiverse_sentry"}
NAMESPACES = frozenset({NAMESPACE, "pulumi", *PROVIDER_NAMESPACES})
# Provider keys that hold credentials: only as Pulumi secrets.
PROVIDER_SECRETS = frozenset({"aws:accessKey", "aws:secretKey", "aws:token", "pagerduty:token",
                              "pagerduty:userToken", "sentry:token"})

# Upper bounds of counts: far above any real stack, low enough that a typo fails here.
MAX_FLEET_HOSTS = 1000
MAX_PROCESSES = 256
MAX_PHYSICAL_SHARDS = 1024
MAX_REPLICAS = 5
MAX_MEMORY_MB = 24 * 1024 * 1024  # the largest EC2 instance has 24 TiB
GP3_MAX_GB = 16384  # EBS gp3: 1 GiB to 16 TiB


class Model(BaseModel):
    """Strict base: camelCase aliases, exact types, unknown keys are errors, frozen once loaded."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, strict=True
    )


_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$")


def dns_name_problem(value: str) -> str | None:
    """Why `value` is not a name DNS (RFC 1035) and ACM accept for a site, or None."""
    if not value.isascii():
        return f"{show(value)} is not ASCII; write the name in its punycode (xn--) form"
    if value.endswith("."):
        return f"{show(value)} ends with a dot; write it without the trailing dot"
    if value.startswith("*."):
        return f"{show(value)} is a wildcard; give one name"
    if len(value) > 253:
        return f"{show(value)} is longer than 253 characters"
    labels = value.split(".")
    if len(labels) < 2:
        return f"{show(value)} is not a DNS name: it needs at least two labels (e.g. photos.example.com)"
    for label in labels:
        if not label:
            return f"{show(value)} is not a DNS name: it has an empty label"
        if len(label) > 63:
            return f"{show(value)} is not a DNS name: label {show(label, 20)} is longer than 63 characters"
        if not _LABEL.match(label):
            return (f"{show(value)} is not a DNS name: label {show(label, 20)} may hold only letters, digits "
                    "and hyphens, not at its start or end")
    if labels[-1].isdigit():
        return f"{show(value)} is not a DNS name: its top-level label is numeric"
    return None


def url_problem(value: str) -> str | None:
    """Why `value` is not an absolute http(s) URL with a host, or None."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 — raises on a port that is not a number
    except ValueError:
        return f"{show(value)} is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        return f"{show(value)} is not an http(s) URL"
    return None


def _threshold(value: Any) -> Any:
    """Munin limits may be written as YAML numbers; they are kept as Munin's text form."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, "g") if isinstance(value, float) else str(value)
    return value


_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_MUNIN_LIMIT = re.compile(rf"^(?:{_NUMBER}|{_NUMBER}:|:{_NUMBER}|{_NUMBER}:{_NUMBER})$")
Threshold = Annotated[str | None, BeforeValidator(_threshold)]

PositiveInt = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=0)]
Port = Annotated[int, Field(ge=1024, le=65535)]


def _matching(pattern: str, what: str) -> AfterValidator:
    """A string rule with an error line saying what the value should be."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{show(value)} is not {what}")
        return value

    return AfterValidator(check)


InstanceType = Annotated[str, _matching(r"[a-z][a-z0-9-]*\.[a-z0-9-]+", "an EC2 instance type name (e.g. c5.large)")]
NonEmpty = Annotated[str, _matching(r"[^\s\x00-\x1f](?:[^\x00-\x1f]{0,253}[^\s\x00-\x1f])?",
                                    "a non-empty name (at most 255 characters, no blanks at either end)")]
# Old AMI ids have 8 hex digits, current ones 17.
Ami = Annotated[str, _matching(r"ami-(?:[0-9a-f]{8}|[0-9a-f]{17})", "an AMI id (ami- and 8 or 17 hex digits)")]
# Sentry slugs: lowercase letters, digits, '-' and '_', at most 50.
SentrySlug = Annotated[str, _matching(r"[a-z0-9][a-z0-9_-]{0,49}", "a Sentry slug (lowercase letters, digits, - and _)")]


class Fleet(Model):
    """A group of identical hosts serving one role."""

    count: Count = Field(le=MAX_FLEET_HOSTS, description="Number of hosts.")
    instance_type: InstanceType = Field("t3.small", description="EC2 instance type (AWS only).")
    processes: PositiveInt = Field(
        1, le=MAX_PROCESSES,
        description="Processes per host: nginx workers, gunicorn workers or Celery concurrency.",
    )


class Fleets(Model):
    """The stateless tiers."""

    nginx: Fleet = Field(description="Reverse proxies behind the load balancer.")
    app: Fleet = Field(description="gunicorn + Django app servers.")
    worker: Fleet = Field(description="Celery workers.")


class Postgres(Model):
    """Sharded PostgreSQL: logical shards (schemas) mapped onto physical shards (clusters)."""

    version: Literal[15, 16, 17] = Field(
        15,
        description=(
            "PostgreSQL major version; unpinned, the major the target's OS ships (AWS: Ubuntu 24.04's 16, "
            "one-box: Debian 12's 15). A host never changes the major under an existing cluster: "
            "a converge that would stops, naming the cluster."
        ),
    )
    logical_shards: PositiveInt = Field(description="Logical shards (schemas); at most 2^13.")
    physical_shards: PositiveInt = Field(le=MAX_PHYSICAL_SHARDS, description="Physical shards (primary clusters).")
    replicas_per_shard: Count = Field(1, le=MAX_REPLICAS, description="Streaming replicas per physical shard.")
    synchronous_commit: bool = Field(
        True, description="Wait for the replica before acknowledging a commit (no lost writes on failover)."
    )
    instance_type: InstanceType = Field("r5.xlarge", description="EC2 instance type (AWS only).")
    volume_gb: PositiveInt = Field(100, le=GP3_MAX_GB, description="Data volume size, GiB (gp3: 1–16384; AWS only).")
    id_epoch_ms: int = Field(
        INSTAGRAM_EPOCH_MS, ge=0, description="Custom epoch of the 64-bit ids, in Unix milliseconds (not in the future)."
    )

    @field_validator("logical_shards")
    @classmethod
    def _fits_id_field(cls, value: int) -> int:
        if value > MAX_LOGICAL_SHARDS:
            raise ValueError(
                f"{value} logical shards do not fit the {SHARD_ID_BITS}-bit shard id field "
                f"(at most {MAX_LOGICAL_SHARDS})"
            )
        return value

    @field_validator("id_epoch_ms")
    @classmethod
    def _epoch(cls, value: int) -> int:
        now_ms = int(time.time() * 1000)
        if value > now_ms:
            raise ValueError(f"{value} is in the future; ids would start negative")
        if value < 10**11:  # before 1973-03: seconds, not milliseconds
            raise ValueError(f"{value} looks like seconds; the epoch is in Unix milliseconds")
        if value + (1 << TIMESTAMP_BITS) <= now_ms:
            raise ValueError(f"{value} is more than 2^{TIMESTAMP_BITS} ms ago; ids would overflow")
        return value

    @model_validator(mode="after")
    def _shards_divide(self) -> Postgres:
        # Not a multiple: physical shards grow one at a time (`ops shard add`), 64 over 3 is fine.
        if self.logical_shards < self.physical_shards:
            raise ValueError(
                f"logicalShards ({self.logical_shards}) must be at least "
                f"physicalShards ({self.physical_shards}): every physical shard holds a logical one"
            )
        return self


class Redis(Model):
    """Redis: one primary and its replicas (feeds, sessions, counters)."""

    replicas: Count = Field(1, le=MAX_REPLICAS, description="Replicas of the primary; persistence runs on replicas only.")
    maxmemory_mb: PositiveInt = Field(256, le=MAX_MEMORY_MB, description="maxmemory per instance, MiB.")
    maxmemory_policy: Literal[
        "noeviction", "allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-lfu", "allkeys-random",
        "volatile-random", "volatile-ttl",
    ] = Field("allkeys-lru", description="Eviction policy.")
    instance_type: InstanceType = Field("r5.large", description="EC2 instance type (AWS only).")


class Memcached(Model):
    """Memcached instances (object cache in front of the shards)."""

    count: PositiveInt = Field(1, le=MAX_FLEET_HOSTS, description="Instances.")
    memory_mb: PositiveInt = Field(64, le=MAX_MEMORY_MB, description="Cache size per instance, MiB.")
    instance_type: InstanceType = Field("r5.large", description="EC2 instance type (AWS only).")


class RabbitMQ(Model):
    """RabbitMQ: the Celery broker."""

    nodes: PositiveInt = Field(1, le=9, description="Nodes; more than one are clustered, queues mirrored on every node (classic mirroring).")
    vhost: NonEmpty = Field("photostack", description="Virtual host for the app.")
    instance_type: InstanceType = Field("t3.medium", description="EC2 instance type (AWS only).")


class Limit(Model):
    """Warning/critical thresholds of one graphed value (Munin syntax: "100", ":5", "10:", "1:9"; numbers too)."""

    warning: Threshold = None
    critical: Threshold = None

    @field_validator("warning", "critical")
    @classmethod
    def _munin_syntax(cls, value: str | None) -> str | None:
        if value is not None and not _MUNIN_LIMIT.match(value):
            raise ValueError(f"{show(value)} is not a number or a Munin range (e.g. 100, :5, 10:, 1:9)")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Limit:
        # Two plain maxima: warning must come before critical.
        if self.warning and self.critical and ":" not in self.warning + self.critical:
            if float(self.warning) > float(self.critical):
                raise ValueError(f"warning ({self.warning}) is above critical ({self.critical})")
        return self


MUNIN_PLUGINS = REPO_ROOT / "monitoring" / "agents" / "munin" / "plugins"


class DashboardLogin(Model):
    """The operator login (OpenID Connect) the load balancer asks for before the dashboards
    (/munin/, /wallboard/) on AWS; its client secret is the dashboardOidcClientSecret secret."""

    issuer: str = Field(description="OIDC issuer, e.g. https://accounts.google.com.")
    authorization_endpoint: str = Field(description="The identity provider's authorization endpoint (https).")
    token_endpoint: str = Field(description="The identity provider's token endpoint (https).")
    user_info_endpoint: str = Field(description="The identity provider's user info endpoint (https).")
    client_id: str = Field(description="OAuth client id registered for https://<domain>/oauth2/idpresponse.")

    @field_validator("issuer", "authorization_endpoint", "token_endpoint", "user_info_endpoint")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError(f"must be an https:// URL, not {value!r}")
        return value


class DashboardPassword(Model):
    """The other operator login in front of the dashboards: HTTP basic authentication, asked by
    nginx (the nginx tier for /wallboard/, the monitoring host for /munin/) with the password of
    the dashboardPassword secret; the load balancer forwards to them. For stacks without an
    identity provider (the lab); TLS from the load balancer keeps the password off the wire."""

    user: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="The login's user name, e.g. oncall.")


class Monitoring(Model):
    """Munin, the fast health watcher, Pingdom and the dashboards' login."""

    munin_interval_s: PositiveInt = Field(300, ge=60, le=3600, description="Munin polling cycle, 60–3600 s.")
    health_probe_interval_s: PositiveInt = Field(10, le=3600, description="Fast health watcher probe interval.")
    pingdom: bool = Field(False, description="Create a Pingdom check of the public /health.")
    pingdom_pagerduty_integration_id: PositiveInt | None = Field(
        None, description="Pingdom's id of its PagerDuty integration, which the check alerts through (Pingdom "
        "makes it in its UI: Integrations → Add integration → PagerDuty); needed with pingdom and alerting.pagerduty."
    )
    limits: dict[str, Limit] = Field(
        default_factory=dict, max_length=500,
        description="Per 'plugin.field' limits, e.g. 'pgbouncer.waiting'; plugin: one of monitoring/agents/munin/plugins.",
    )
    dashboard_login: DashboardLogin | None = Field(
        None, description="AWS: the OIDC login in front of /munin/ and /wallboard/; without one (or "
        "dashboardPassword) the load balancer answers those paths 403 (the one-box serves them on loopback)."
    )
    dashboard_password: DashboardPassword | None = Field(
        None, description="Instead of dashboardLogin: a user name whose password (the dashboardPassword "
        "secret) nginx asks for before /munin/ and /wallboard/, on every target."
    )

    @field_validator("limits")
    @classmethod
    def _known_plugins(cls, value: dict[str, Limit]) -> dict[str, Limit]:
        kinds = {p.name.rstrip("_") for p in MUNIN_PLUGINS.iterdir()}
        for key in value:
            plugin, dot, field = key.partition(".")
            if not dot or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field):
                raise ValueError(f"{show(key)} is not 'plugin.field' (e.g. pgbouncer.waiting)")
            if plugin not in kinds:
                raise ValueError(f"{show(key)}: no Munin plugin {show(plugin)} (one of {', '.join(sorted(kinds))})")
        return value

    @model_validator(mode="after")
    def _one_dashboard_login(self) -> Monitoring:
        if self.dashboard_login is not None and self.dashboard_password is not None:
            raise ValueError("dashboardLogin and dashboardPassword are two ways to log in: give one")
        return self


class Alerting(Model):
    """Where pages go."""

    pagerduty: bool = Field(False, description="Send pages to PagerDuty (needs the pagerdutyRoutingKey secret).")
    pagerduty_escalation_policy: Annotated[str, _matching(r"[A-Z0-9]{7,20}", "a PagerDuty id (e.g. PABC123)")] | None = Field(
        None, description="PagerDuty escalation policy id, e.g. PABC123 (AWS)."
    )
    sentry: bool = Field(False, description="Report errors to Sentry (needs the sentryDsn secret).")
    sentry_organization: SentrySlug = Field(
        "photostack", description="Sentry organization slug (the AWS project; the releases of `ops deploy`)."
    )
    sentry_team: SentrySlug = Field(
        "photostack", description="Sentry team slug that owns the project (AWS)."
    )
    sentry_url: str | None = Field(
        None, description="Sentry's web URL for the releases `ops deploy` creates (with the sentryAuthToken "
        "secret); default: from the DSN's host (self-hosted), https://sentry.io for sentry.io DSNs.",
    )
    runbook_base_url: str = Field(
        "https://github.com/photostack/photostack/blob/main/runbooks",
        description="Where page links to runbooks point (an http(s) URL).",
    )

    @field_validator("sentry_url", "runbook_base_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value is not None and (problem := url_problem(value)):
            raise ValueError(problem)
        return value


class Backups(Model):
    """pgBackRest backups of every physical shard, restore drills, and EBS snapshots of the data
    volumes (AWS). Schedules are five-field cron expressions in UTC (infra/schedule.py: cron on the
    one-box, systemd timers on every other host)."""

    full_schedule: str = Field("30 3 * * 0", description="Cron schedule of full backups (UTC).")
    diff_schedule: str = Field("30 3 * * 1-6", description="Cron schedule of differential backups (UTC).")
    retention_full: PositiveInt = Field(2, description="Full backups kept (older ones and their WAL expire).")
    retention_diff: PositiveInt = Field(6, description="Differential backups kept.")
    archive_timeout_s: int = Field(
        60, ge=1, le=60, description="Switch WAL at least this often, so at most this many seconds of writes are unarchived (RPO)."
    )
    stale_after_h: PositiveInt = Field(
        26, description="Page when the last good backup of a shard is older (hours); more than the schedule's longest gap."
    )
    drill_schedule: str = Field(
        "30 5 * * *", description="Cron schedule of the restore drill: each shard's latest backup restored and checked (UTC)."
    )
    drill_stale_after_h: PositiveInt = Field(
        50, description="Page when the last good restore drill of a shard is older (hours); more than the drill schedule's longest gap."
    )
    bucket_noncurrent_days: PositiveInt = Field(
        14, description="S3: days an overwritten or deleted backup object version is kept (AWS only)."
    )
    snapshot_retain: PositiveInt = Field(7, description="EBS snapshots of each data volume kept, one a day (AWS only).")

    @field_validator("full_schedule", "diff_schedule", "drill_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        schedule.parse(value)
        return value

    @model_validator(mode="after")
    def _pages_only_when_late(self) -> Backups:
        # A limit below the schedule's own gap would page every week on a healthy stack.
        backups = self.backup_gap_h
        if self.stale_after_h <= backups:
            raise ValueError(f"staleAfterH ({self.stale_after_h}) must exceed the longest gap between scheduled "
                             f"backups ({backups:g} h, fullSchedule and diffSchedule together)")
        drills = self.drill_gap_h
        if self.drill_stale_after_h <= drills:
            raise ValueError(f"drillStaleAfterH ({self.drill_stale_after_h}) must exceed the longest gap between "
                             f"scheduled restore drills ({drills:g} h, drillSchedule)")
        return self

    @property
    def backup_gap_h(self) -> float:
        """The longest time between two scheduled backups of a shard (hours)."""
        return schedule.longest_gap_h(schedule.parse(self.full_schedule), schedule.parse(self.diff_schedule))

    @property
    def drill_gap_h(self) -> float:
        """The longest time between two scheduled restore drills of a shard (hours)."""
        return schedule.longest_gap_h(schedule.parse(self.drill_schedule))


class OneBox(Model):
    """Where the one-box puts each service on this machine (loopback only); ranges must not overlap."""

    address: str = Field("127.0.0.1", description="Loopback address every service binds to.")
    ssh_port: Port = Field(2222, description="Port of the one-box's own sshd.")
    http_port: Port = Field(8080, description="nginx: the app, /health and /munin/.")
    postgres_base_port: Port = Field(5433, description="First Postgres cluster port (one per cluster).")
    pgbouncer_port: Port = 6432
    redis_base_port: Port = Field(6379, description="First Redis port (primary, then replicas).")
    memcached_base_port: Port = Field(11211, description="First Memcached port (one per instance).")
    rabbitmq_port: Port = 5672
    app_base_port: Port = Field(8001, description="First gunicorn port (one per app node).")
    munin_node_port: Port = 4949

    @field_validator("address")
    @classmethod
    def _loopback(cls, value: str) -> str:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{show(value)} is not an IP address") from None
        if not address.is_loopback:
            raise ValueError(f"{value} is not a loopback address")
        return value


class Secret(Model):
    """A Pulumi secret as it appears in the stack YAML: `{secure: <ciphertext>}`."""

    secure: Annotated[str, Field(min_length=1)]


def _ssh_public_key_problem(value: str) -> str | None:
    """Why `value` is not one OpenSSH public key line EC2 imports; never quotes the value."""
    if "PRIVATE KEY" in value or value.lstrip().startswith("-----BEGIN"):
        return "is a private key (value not shown); paste the public key (the .pub file) and replace the leaked key"
    if "\n" in value.strip():
        return "must be one line: an OpenSSH public key such as `ssh-ed25519 AAAA… you@host`"
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    try:
        key = load_ssh_public_key(value.strip().encode())
    except (ValueError, TypeError):
        return "is not an OpenSSH public key (ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp*); value not shown"
    if getattr(key, "key_size", 2048) < 2048:
        return "is an RSA key shorter than 2048 bits, which EC2 refuses"
    return None


class StackConfig(Model):
    """The whole stack, as one typed value."""

    target: Literal["aws", "onebox"] = Field(description="Where the stack runs.")
    domain: str = Field(description="Public DNS name of the site (RFC 1035, as ACM accepts it).")
    environment: Annotated[str, _matching(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?",
                                          "an environment name (lowercase letters, digits, inner hyphens, ≤ 32)")] = Field(
        description="Environment name used in tags, Sentry slugs and pages: lowercase letters, digits, "
        "inner hyphens, at most 32."
    )
    region: str = Field("us-east-1", description="AWS region (AWS only); `aws:region`, when set, must agree.")
    availability_zones: Annotated[list[str], Field(min_length=1, max_length=6)] = Field(
        default_factory=lambda: ["us-east-1a", "us-east-1b"],
        description="AZs of the region to spread hosts over, each once.",
    )
    vpc_cidr: str = Field("10.20.0.0/16", description="VPC address range (AWS only): IPv4, /16 to /28.")
    admin_cidrs: Annotated[list[str], Field(max_length=50)] = Field(
        default_factory=list,
        description="IPv4 networks allowed to SSH to the bastion (AWS only); empty: no SSH from anywhere.",
    )
    fleets: Fleets
    postgres: Postgres
    redis: Redis = Redis()
    memcached: Memcached = Memcached()
    rabbitmq: RabbitMQ = RabbitMQ()
    monitoring: Monitoring = Monitoring()
    alerting: Alerting = Alerting()
    onebox: OneBox = OneBox()
    backups: Backups = Backups()
    secrets: dict[str, Secret] = Field(
        default_factory=dict, description="Pulumi secrets (AWS), keyed by their camelCase name."
    )
    ssh_public_key: str | None = Field(
        None, description="OpenSSH public key installed for the admin user on every host and the bastion (AWS only)."
    )
    provisioner: str | None = Field(
        None, description="AWS only: a Python module with `up(config, stack)` and `down()` that `ops up`/`ops down` "
        "call to create and delete the stack's hosts instead of `pulumi up`/`destroy` (the lab: `lab.fleet`).",
    )
    hosted_zone: str | None = Field(
        None, description="Route53 public hosted zone of the domain (AWS only); default: the domain's parent."
    )
    roles: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description=(
            "Per-stack role settings: `roles.<role>.<key>` overrides a setting the role declares in "
            "roles/<role>/defaults.yaml, with a value of the same kind (e.g. `roles: {redis: "
            "{redis_timeout: 300}}`); a key the role does not declare is an error."
        ),
    )
    ami: Ami | None = Field(
        None,
        description=(
            "Image of every host's launch template (AWS only; required there). Pinned so a new upstream "
            "image replaces nothing: changing it changes the templates only, and each node moves when it "
            "is relaunched (`ops replace-node`, docs/aws.md)."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _postgres_major_of_the_distro(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("postgres"), dict) and "version" not in data["postgres"]:
            from infra.targets.kinds import rules_for

            # Unpinned, the major the target's OS ships (the target's rules know which).
            if (rules := rules_for(data.get("target"))) is not None:
                data = {**data, "postgres": {**data["postgres"], "version": rules.distro_postgres_major}}
        return data

    @field_validator("domain", "hosted_zone")
    @classmethod
    def _dns_name(cls, value: str | None) -> str | None:
        if value is not None and (problem := dns_name_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        from infra.aws_names import region_problem

        if problem := region_problem(value):
            raise ValueError(problem)
        return value

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            network = ipaddress.ip_network(value)
        except ValueError:
            raise ValueError(f"{show(value)} is not a network address range such as 10.20.0.0/16 "
                             "(no host bits set)") from None
        if network.version != 4:
            raise ValueError(f"{value} is not IPv4; a VPC's primary range is IPv4")
        if not 16 <= network.prefixlen <= 28:
            raise ValueError(f"{value}: AWS allows VPC ranges from /16 to /28")
        return value

    @field_validator("ssh_public_key")
    @classmethod
    def _ssh_public_key(cls, value: str | None) -> str | None:
        if value is not None and (problem := _ssh_public_key_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("admin_cidrs")
    @classmethod
    def _admin_cidrs(cls, value: list[str]) -> list[str]:
        from infra.config_checks import admin_cidrs_problem

        if problem := admin_cidrs_problem(value):
            raise ValueError(problem)
        return value


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if not parts:
        return NAMESPACE
    return f"{NAMESPACE}:" + ".".join(parts)


def _reason(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _secret_problems(keys: dict[str, Any], rules: KindRules) -> tuple[dict[str, Any], list[str]]:
    """Lift secret keys out of the flat key map; a secret in plain text (or, where the target keeps
    secrets elsewhere, at all) is an error."""
    secrets: dict[str, Any] = {}
    problems: list[str] = []
    for name in SECRET_KEYS:
        if name not in keys:
            continue
        value = keys.pop(name)
        if why := rules.plain_secret_problem(name, value):
            problems.append(f"{NAMESPACE}:{name}: {why}")
        else:
            secrets[name] = value
    return secrets, problems


def _value_problems(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """(key path, problem) for values refused wherever they are: YAML 1.1 boolean words (`yes`,
    `off` …) and private keys (never shown: the line names the key only)."""
    from infra.config_file import Yaml11Word

    if isinstance(value, Yaml11Word):
        return [(path, f"`{value}` is a boolean in YAML 1.1 and a string in YAML 1.2 (Pulumi); "
                       "write true/false, a number, or quote the string")]
    if isinstance(value, str) and ("PRIVATE KEY" in value or value.startswith("PuTTY-User-Key-File")):
        what = "the public key (the .pub file)" if path[-1:] == ("sshPublicKey",) else "no key here"
        return [(path, f"is a private key (value not shown); paste {what} and replace the leaked key")]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _value_problems(item, (*path, key))]
    if isinstance(value, list):
        return [found for i, item in enumerate(value) for found in _value_problems(item, (*path, i))]
    return []


def _without(keys: dict[str, Any], paths: list[tuple[Any, ...]]) -> dict[str, Any]:
    """A copy of `keys` with the values at `paths` set to None: reported once, never validated (or echoed) again."""
    keys = copy.deepcopy(keys)
    for path in paths:
        node: Any = keys
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = None
    return keys


def _namespace_problems(raw: dict[Any, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Split config keys into ours and the providers'; refuse other namespaces and plain-text credentials."""
    from infra.config_checks import provider_keys

    ours: dict[str, Any] = {}
    providers: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        namespace, sep, name = str(key).partition(":")
        if not sep or not namespace or not name:
            problems.append(f"{key}: config keys must be namespaced, e.g. {NAMESPACE}:{key}")
        elif namespace == NAMESPACE:
            ours[name] = value
        elif namespace not in NAMESPACES:
            problems.append(f"{key}: unknown namespace '{namespace}' (this stack reads "
                            f"{', '.join(sorted(NAMESPACES))}); a typo of {NAMESPACE}?")
        else:
            known = provider_keys(PROVIDER_NAMESPACES.get(namespace))
            if known is not None and name.split(".")[0] not in known:
                problems.append(f"{key}: unknown key of the {namespace} provider")
            elif str(key) in PROVIDER_SECRETS and not (isinstance(value, dict) and set(value) == {"secure"}):
                problems.append(f"{key}: is a credential; store it with `pulumi config set --secret {key}`, "
                                "not in plain text")
            else:
                providers[str(key)] = value
    return ours, providers, problems


def parse_stack_config(document: Any, source: str = "stack config") -> StackConfig:
    """Validate the parsed YAML of a `Pulumi.<stack>.yaml` document into a `StackConfig`."""
    from infra.config_checks import cross_checks
    from infra.config_file import STACK_FILE_KEYS
    from infra.targets.kinds import rules_for, secret_rules

    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise ConfigError([f"{source}: expected a mapping with a 'config:' section"])
    problems = [f"{source}: unknown top-level key {show(str(key))} (a stack file holds "
                f"{', '.join(sorted(STACK_FILE_KEYS))})" for key in document if key not in STACK_FILE_KEYS]
    keys, providers, namespace_problems = _namespace_problems(document.get("config") or {})
    problems += namespace_problems
    if not keys:
        raise ConfigError(problems + [f"{source}: no {NAMESPACE}:* keys found"])
    found = _value_problems(keys)
    problems += [f"{_location(path)}: {why}" for path, why in found]
    reported = {_location(path) for path, _ in found}
    if found:
        keys = _without(keys, [path for path, _ in found])
    rules = rules_for(keys.get("target"))
    secrets, secret_problems = _secret_problems(keys, secret_rules(keys.get("target")))
    problems += secret_problems
    if "secrets" in keys:
        problems.append(f"{NAMESPACE}:secrets: unknown key (secrets are individual keys such as {NAMESPACE}:dbPassword)")
        keys.pop("secrets")
    try:
        config = StackConfig.model_validate({**keys, "secrets": secrets})
    except ValidationError as exc:
        for error in exc.errors():
            where = _location(error["loc"])
            if not any(where == r or where.startswith(r + ".") for r in reported):
                problems.append(f"{where}: {_reason(error)}")
        raise ConfigError(problems) from None
    assert rules is not None, "the model accepted the target"
    problems += [f"{NAMESPACE}:{key}: {why}" for key, why in cross_checks(config, keys, providers, rules)]
    if rules.secrets_in_stack_file:
        problems += [
            f"{NAMESPACE}:{name}: missing secret; set it with `pulumi config set --secret {name}`"
            for name in required_secrets(config)
            if name not in config.secrets
        ]
    if problems:
        raise ConfigError(problems)
    return config


def required_secrets(config: StackConfig) -> list[str]:
    """Secrets this stack needs: the service passwords, plus those of the integrations it enables."""
    from infra.targets.kinds import rules_of

    needed = {*GENERATED_SECRETS, *rules_of(config).own_secrets(config)}
    if config.monitoring.pingdom:
        needed.add("pingdomToken")
    if config.monitoring.dashboard_password is not None:
        needed.add("dashboardPassword")
    return [name for name in SECRET_KEYS if name in needed]


def placeholder_secrets(config: StackConfig) -> list[str]:
    """Secrets whose `secure:` value is still the shipped placeholder (not a real Pulumi ciphertext)."""
    return sorted(name for name, secret in config.secrets.items() if "REPLACE-ME" in secret.secure)


def stacks_dir() -> Path:
    """Where `Pulumi.<stack>.yaml` files are: the repo root, or `$PHOTOSTACK_STACKS_DIR`."""
    return Path(os.environ.get("PHOTOSTACK_STACKS_DIR", REPO_ROOT))


def stack_file(stack: str, root: Path | None = None) -> Path:
    """Path of the `Pulumi.<stack>.yaml` file of a stack."""
    check_stack_name(stack)
    return (root or stacks_dir()) / f"Pulumi.{stack}.yaml"


def load_stack_config(stack: str, root: Path | None = None, path: Path | None = None) -> StackConfig:
    """Read, parse and validate the stack config of `stack` (or of the file at `path`)."""
    from infra.config_file import FileProblem, read

    path = path or stack_file(stack, root)
    if not path.is_file():
        raise ConfigError([f"{path.name}: stack '{stack}' has no config file at {path}"])
    try:
        document = read(path)
    except FileProblem as problem:
        raise ConfigError([problem.line]) from None
    except OSError as exc:
        raise ConfigError([f"{path.name}: cannot read ({exc.strerror})"]) from None
    return parse_stack_config(document, source=path.name)
