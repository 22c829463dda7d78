"""The stack config: the `photostack:` keys of `Pulumi.<stack>.yaml`, parsed once into one typed model.

Everything that needs topology (the Pulumi program, the one-box, the converge engine, the app's
shard router, the runbooks) reads a `StackConfig`; nothing else parses the YAML.
Keys are camelCase in YAML (Pulumi's convention) and snake_case in Python.
Bad input raises `ConfigError`, which carries one line per problem naming the key path.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

NAMESPACE = "photostack"
REPO_ROOT = Path(__file__).resolve().parent.parent

# Instagram's id layout: 41 bits of milliseconds | 13 bits logical shard | 10 bits sequence.
SHARD_ID_BITS = 13
MAX_LOGICAL_SHARDS = 1 << SHARD_ID_BITS
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
    "djangoSecretKey",
)
# Every secret: the service passwords plus the integrations' keys.
# `sentryAuthToken` is optional: with it `ops deploy` creates Sentry releases and deploys.
SECRET_KEYS = GENERATED_SECRETS + ("pagerdutyRoutingKey", "pingdomToken", "sentryDsn", "sentryAuthToken")


class ConfigError(Exception):
    """A stack config that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class Model(BaseModel):
    """Strict base: camelCase aliases, unknown keys are errors, frozen once loaded."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


PositiveInt = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=0)]


class Fleet(Model):
    """A group of identical hosts serving one role."""

    count: Count = Field(description="Number of hosts.")
    instance_type: str = Field("t3.small", description="EC2 instance type (AWS only).")
    processes: PositiveInt = Field(
        1, description="Processes per host: nginx workers, gunicorn workers or Celery concurrency."
    )


class Fleets(Model):
    """The stateless tiers."""

    nginx: Fleet = Field(description="Reverse proxies behind the load balancer.")
    app: Fleet = Field(description="gunicorn + Django app servers.")
    worker: Fleet = Field(description="Celery workers.")


class Postgres(Model):
    """Sharded PostgreSQL: logical shards (schemas) mapped onto physical shards (clusters)."""

    version: Literal[15, 16, 17] = Field(15, description="PostgreSQL major version.")
    logical_shards: PositiveInt = Field(description="Logical shards (schemas); at most 2^13.")
    physical_shards: PositiveInt = Field(description="Physical shards (primary clusters).")
    replicas_per_shard: Count = Field(1, description="Streaming replicas per physical shard.")
    synchronous_commit: bool = Field(
        True, description="Wait for the replica before acknowledging a commit (no lost writes on failover)."
    )
    instance_type: str = Field("r5.xlarge", description="EC2 instance type (AWS only).")
    volume_gb: PositiveInt = Field(100, description="Data volume size (AWS only).")
    id_epoch_ms: int = Field(
        INSTAGRAM_EPOCH_MS, ge=0, description="Custom epoch of the 64-bit ids, in Unix milliseconds."
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

    @model_validator(mode="after")
    def _shards_divide(self) -> Postgres:
        if self.logical_shards % self.physical_shards:
            raise ValueError(
                f"logicalShards ({self.logical_shards}) must be a multiple of "
                f"physicalShards ({self.physical_shards})"
            )
        return self


class Redis(Model):
    """Redis: one primary and its replicas (feeds, sessions, counters)."""

    replicas: Count = Field(1, description="Replicas of the primary; persistence runs on replicas only.")
    maxmemory_mb: PositiveInt = Field(256, description="maxmemory per instance, MiB.")
    maxmemory_policy: Literal[
        "noeviction", "allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-lfu", "allkeys-random"
    ] = Field("allkeys-lru", description="Eviction policy.")
    instance_type: str = Field("r5.large", description="EC2 instance type (AWS only).")


class Memcached(Model):
    """Memcached instances (object cache in front of the shards)."""

    count: PositiveInt = Field(1, description="Instances.")
    memory_mb: PositiveInt = Field(64, description="Cache size per instance, MiB.")
    instance_type: str = Field("r5.large", description="EC2 instance type (AWS only).")


class RabbitMQ(Model):
    """RabbitMQ: the Celery broker."""

    nodes: PositiveInt = Field(1, description="Nodes; more than one are clustered with quorum queues.")
    vhost: str = Field("photostack", description="Virtual host for the app.")
    instance_type: str = Field("t3.medium", description="EC2 instance type (AWS only).")


class Limit(Model):
    """Warning/critical thresholds of one graphed value (Munin syntax, e.g. "100" or ":5")."""

    warning: str | None = None
    critical: str | None = None


class Monitoring(Model):
    """Munin, the fast health watcher and Pingdom."""

    munin_interval_s: PositiveInt = Field(300, description="Munin polling cycle.")
    health_probe_interval_s: PositiveInt = Field(10, description="Fast health watcher probe interval.")
    pingdom: bool = Field(False, description="Create a Pingdom check of the public /health.")
    limits: dict[str, Limit] = Field(
        default_factory=dict, description="Per 'plugin.field' limits, e.g. 'pgbouncer.waiting'."
    )


class Alerting(Model):
    """Where pages go."""

    pagerduty: bool = Field(False, description="Send pages to PagerDuty (needs the pagerdutyRoutingKey secret).")
    pagerduty_escalation_policy: str | None = Field(None, description="PagerDuty escalation policy id (AWS).")
    sentry: bool = Field(False, description="Report errors to Sentry (needs the sentryDsn secret).")
    sentry_organization: str = Field(
        "photostack", description="Sentry organization slug (the AWS project; the releases of `ops deploy`)."
    )
    sentry_team: str = Field("photostack", description="Sentry team that owns the project (AWS).")
    sentry_url: str | None = Field(
        None, description="Sentry's web URL for the releases `ops deploy` creates (with the sentryAuthToken "
        "secret); default: from the DSN's host (self-hosted), https://sentry.io for sentry.io DSNs.",
    )
    runbook_base_url: str = Field(
        "https://github.com/photostack/photostack/blob/main/runbooks",
        description="Where page links to runbooks point.",
    )

    @field_validator("sentry_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value


class OneBox(Model):
    """Where the one-box puts each service on this machine (loopback only)."""

    address: str = Field("127.0.0.1", description="Loopback address every service binds to.")
    ssh_port: int = Field(2222, ge=1024, le=65535, description="Port of the one-box's own sshd.")
    http_port: int = Field(8080, ge=1024, le=65535, description="nginx: the app, /health and /munin/.")
    postgres_base_port: int = Field(5433, ge=1024, le=65000, description="First Postgres cluster port.")
    pgbouncer_port: int = Field(6432, ge=1024, le=65535)
    redis_base_port: int = Field(6379, ge=1024, le=65000)
    memcached_base_port: int = Field(11211, ge=1024, le=65000)
    rabbitmq_port: int = Field(5672, ge=1024, le=65535)
    app_base_port: int = Field(8001, ge=1024, le=65000, description="First gunicorn port.")
    munin_node_port: int = Field(4949, ge=1024, le=65535)

    @field_validator("address")
    @classmethod
    def _loopback(cls, value: str) -> str:
        if not ipaddress.ip_address(value).is_loopback:
            raise ValueError(f"{value} is not a loopback address")
        return value


class Secret(Model):
    """A Pulumi secret as it appears in the stack YAML: `{secure: <ciphertext>}`."""

    secure: str


class StackConfig(Model):
    """The whole stack, as one typed value."""

    target: Literal["aws", "onebox"] = Field(description="Where the stack runs.")
    domain: str = Field(description="Public DNS name of the site.")
    environment: str = Field(description="Environment name used in tags, Sentry and pages.")
    region: str = Field("us-east-1", description="AWS region (AWS only).")
    availability_zones: list[str] = Field(
        default_factory=lambda: ["us-east-1a", "us-east-1b"], description="AZs to spread hosts over."
    )
    vpc_cidr: str = Field("10.20.0.0/16", description="VPC address range (AWS only).")
    admin_cidrs: list[str] = Field(
        default_factory=list,
        description="Networks allowed to SSH to the bastion (AWS only); empty: no SSH from anywhere.",
    )
    fleets: Fleets
    postgres: Postgres
    redis: Redis = Redis()
    memcached: Memcached = Memcached()
    rabbitmq: RabbitMQ = RabbitMQ()
    monitoring: Monitoring = Monitoring()
    alerting: Alerting = Alerting()
    onebox: OneBox = OneBox()
    secrets: dict[str, Secret] = Field(
        default_factory=dict, description="Pulumi secrets (AWS), keyed by their camelCase name."
    )

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        labels = value.split(".")
        if len(labels) < 2 or not all(label and label.replace("-", "").isalnum() for label in labels):
            raise ValueError(f"{value!r} is not a DNS name")
        return value

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        ipaddress.ip_network(value)
        return value

    ssh_public_key: str | None = Field(
        None, description="OpenSSH public key installed for the admin user on every host and the bastion (AWS only)."
    )
    hosted_zone: str | None = Field(
        None, description="Route53 public hosted zone of the domain (AWS only); default: the domain's parent."
    )
    ami: str | None = Field(
        None,
        pattern=r"^ami-[0-9a-f]{8,17}$",
        description=(
            "Image of every host's launch template (AWS only; required there). Pinned so a new upstream "
            "image replaces nothing: changing it changes the templates only, and each node moves when it "
            "is relaunched (`ops replace-node`, docs/aws.md)."
        ),
    )

    @field_validator("admin_cidrs")
    @classmethod
    def _admin_cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            if ipaddress.ip_network(cidr, strict=False).prefixlen == 0:
                raise ValueError(f"{cidr} would open SSH to the whole internet; list your own networks")
        return value

    @model_validator(mode="after")
    def _target_rules(self) -> StackConfig:
        if self.target == "aws":
            if len(set(self.availability_zones)) < 2:
                raise ValueError("availabilityZones needs at least 2 distinct zones on AWS")
            if self.fleets.nginx.count < 1 or self.fleets.app.count < 1:
                raise ValueError("fleets.nginx.count and fleets.app.count must be at least 1 on AWS")
            if self.ami is None:
                raise ValueError("ami: required on AWS (an Ubuntu 24.04 image id; see docs/aws.md \"The image\")")
        if self.postgres.replicas_per_shard > len(set(self.availability_zones)) - 1 and self.target == "aws":
            raise ValueError(
                "postgres.replicasPerShard needs one more availability zone than replicas "
                "(each replica sits in another AZ than its primary)"
            )
        return self

    @property
    def logical_shards_per_physical(self) -> int:
        return self.postgres.logical_shards // self.postgres.physical_shards


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


def _secret_problems(keys: dict[str, Any], target: str) -> tuple[dict[str, Any], list[str]]:
    """Lift secret keys out of the flat key map; a secret in plain text is an error."""
    secrets: dict[str, Any] = {}
    problems: list[str] = []
    for name in SECRET_KEYS:
        if name not in keys:
            continue
        value = keys.pop(name)
        where = f"{NAMESPACE}:{name}"
        if target == "onebox":
            problems.append(f"{where}: one-box secrets live in the state dir; set it with `ops secret set {name}`")
        elif not (isinstance(value, dict) and set(value) == {"secure"}):
            problems.append(f"{where}: is a secret; store it with `pulumi config set --secret {name}`, not in plain text")
        else:
            secrets[name] = value
    return secrets, problems


def parse_stack_config(document: Any, source: str = "stack config") -> StackConfig:
    """Validate the parsed YAML of a `Pulumi.<stack>.yaml` document into a `StackConfig`."""
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise ConfigError([f"{source}: expected a mapping with a 'config:' section"])
    raw = document.get("config") or {}
    keys: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        namespace, sep, name = str(key).partition(":")
        if not sep:
            problems.append(f"{key}: config keys must be namespaced, e.g. {NAMESPACE}:{key}")
        elif namespace == NAMESPACE:
            keys[name] = value
    if not keys:
        raise ConfigError([f"{source}: no {NAMESPACE}:* keys found"])
    secrets, secret_problems = _secret_problems(keys, str(keys.get("target", "")))
    problems += secret_problems
    if "secrets" in keys:
        problems.append(f"{NAMESPACE}:secrets: unknown key (secrets are individual keys such as {NAMESPACE}:dbPassword)")
        keys.pop("secrets")
    try:
        config = StackConfig.model_validate({**keys, "secrets": secrets})
    except ValidationError as exc:
        problems += [f"{_location(e['loc'])}: {_reason(e)}" for e in exc.errors()]
        raise ConfigError(problems) from None
    if config.target == "aws":
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
    names = list(GENERATED_SECRETS)
    # On AWS the program creates the PagerDuty integration and the Sentry key itself and hands
    # their routing key and DSN to the hosts (infra/alerting.py); on one-box the user sets them.
    onebox = config.target == "onebox"
    if config.alerting.pagerduty and onebox:
        names.append("pagerdutyRoutingKey")
    if config.monitoring.pingdom:
        names.append("pingdomToken")
    if config.alerting.sentry and onebox:
        names.append("sentryDsn")
    return names


def stacks_dir() -> Path:
    """Where `Pulumi.<stack>.yaml` files are: the repo root, or `$PHOTOSTACK_STACKS_DIR`."""
    return Path(os.environ.get("PHOTOSTACK_STACKS_DIR", REPO_ROOT))


def stack_file(stack: str, root: Path | None = None) -> Path:
    """Path of the `Pulumi.<stack>.yaml` file of a stack."""
    return (root or stacks_dir()) / f"Pulumi.{stack}.yaml"


def load_stack_config(stack: str, root: Path | None = None, path: Path | None = None) -> StackConfig:
    """Read, parse and validate the stack config of `stack` (or of the file at `path`)."""
    path = path or stack_file(stack, root)
    if not path.is_file():
        raise ConfigError([f"{path.name}: stack '{stack}' has no config file at {path}"])
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError([f"{path.name}:{where} not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
    return parse_stack_config(document, source=path.name)
