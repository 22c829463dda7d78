"""Secrets on AWS: Pulumi secrets written to SSM Parameter Store, read back by hosts at boot.

The program writes each secret as a SecureString under `/photostack/<stack>/<name>`; a host reads
only the ones its role needs (its instance profile allows nothing else). No secret is ever in
user_data, tags, outputs or the plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config import ConfigError
from infra.secrets import ROTATABLE
from infra.tagging import tags

ROLE = "secrets"

# Which secrets each role reads on its host; pgbouncer rides on app and worker hosts.
APP_SECRETS = (
    "dbPassword",
    "pgbouncerAdminPassword",
    "scramSaltKey",
    "redisPassword",
    "rabbitmqPassword",
    "djangoSecretKey",
    "sentryDsn",
)
ROLE_SECRETS: dict[str, tuple[str, ...]] = {
    # Postgres stores a SCRAM verifier for every login, pgbouncer's admin included (roles/postgres/auth.py).
    "postgres": ("dbPassword", "replicationPassword", "pgbouncerAdminPassword", "scramSaltKey"),
    "app": APP_SECRETS,
    "worker": APP_SECRETS,
    # The admin login (replication) and the Erlang cookie stay on their own hosts: the app's
    # logins cannot reconfigure Redis or join the RabbitMQ cluster.
    "redis": ("redisPassword", "redisAdminPassword"),
    "rabbitmq": ("rabbitmqPassword", "erlangCookie"),
    # The dashboards' password login (monitoring.dashboardPassword), where nginx asks for it.
    "munin_master": ("pagerdutyRoutingKey", "dashboardPassword"),
    "nginx": ("dashboardPassword",),
    "memcached": (),
}


def parameter_name(stack: str, name: str) -> str:
    """The SSM parameter holding secret `name` of `stack`."""
    return f"/photostack/{stack}/{name}"


def rotation_arns(name: str, arn: pulumi.Output[str]) -> list[pulumi.Output[str]]:
    """The ARNs of a rotatable secret's overlap parameters (`<name>.pending`, `<name>.previous`,
    written by `ops secret rotate`): a host that reads the secret reads them too, at every converge
    (absent ones are simply not found)."""
    from infra.secrets import ROTATION_SLOTS

    if name not in ROTATABLE:
        return []
    return [arn.apply(lambda a, slot=slot: f"{a}.{slot}") for slot in ROTATION_SLOTS]


@dataclass(frozen=True)
class SecretParametersArgs:
    """Inputs of the secret parameters."""

    stack: str
    """Stack name: the parameter path and tags."""
    values: dict[str, pulumi.Output[str]]
    """Secret name to its value, each a Pulumi secret."""


class SecretParameters(pulumi.ComponentResource):
    """One SecureString parameter per secret."""

    arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: SecretParametersArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("photostack:secrets:SecretParameters", name, None, opts)
        self.arns = {}
        for secret, value in sorted(args.values.items()):
            parameter = aws.ssm.Parameter(
                f"{name}-{secret}",
                name=parameter_name(args.stack, secret),
                type="SecureString",
                value=pulumi.Output.secret(value),
                tags=tags(args.stack, ROLE, secret),
                # After the first `pulumi up` a rotatable secret belongs to `ops secret rotate`
                # (it writes the parameter): a later `pulumi up` must not put the old value back.
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["value"] if secret in ROTATABLE else None),
            )
            self.arns[secret] = parameter.arn
        self.register_outputs({"arns": self.arns})


def ssm_secret_reader(stack: str, ssm_client: Any) -> Callable[[str], str]:
    """On a host: a `secret(name)` function reading `/photostack/<stack>/<name>` from SSM (boto3
    client); a missing parameter raises ConfigError."""
    return SsmSecrets(stack, ssm_client).__getitem__


class SsmSecrets:
    """An AWS stack's secrets as `ops secret rotate` reads and writes them (the operator's
    credentials): SecureString parameters, a rotating secret's other value beside it under
    `<name>.pending` or `<name>.previous` (infra/secrets.py)."""

    def __init__(self, stack: str, ssm_client: Any) -> None:
        self.stack, self.ssm = stack, ssm_client
        # Every role of every host asks for the overlap values while a converge renders: one read
        # each per process (SSM throttles GetParameter), forgotten when this store writes them.
        self._read: dict[str, str | None] = {}

    def _get(self, key: str) -> str | None:
        if key not in self._read:
            try:
                answer = self.ssm.get_parameter(Name=parameter_name(self.stack, key), WithDecryption=True)
                self._read[key] = answer["Parameter"]["Value"]
            except self.ssm.exceptions.ParameterNotFound:
                self._read[key] = None
        return self._read[key]

    def get(self, name: str) -> str | None:
        return self._get(name)

    def __getitem__(self, name: str) -> str:
        value = self._get(name)
        if value is None:
            raise ConfigError([f"photostack:{name}: no SSM parameter {parameter_name(self.stack, name)}; run `pulumi up -s {self.stack}`"])
        return value

    def rotating(self, name: str) -> tuple[str, str] | None:
        from infra.secrets import rotating_value

        return rotating_value(self._get, name)

    def also_accepted(self, name: str) -> str | None:
        found = self.rotating(name)
        return found[1] if found else None

    def update(self, values: dict[str, str | None]) -> None:
        """Write in the order given (SSM has no transaction): callers order the keys so that a
        stop half-way still leaves both values stored."""
        for key, value in values.items():
            name = parameter_name(self.stack, key)
            self._read.pop(key, None)
            if value is None:
                try:
                    self.ssm.delete_parameter(Name=name)
                except self.ssm.exceptions.ParameterNotFound:
                    pass
            else:
                self.ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)
