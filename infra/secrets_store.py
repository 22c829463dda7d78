"""Secrets on AWS: Pulumi secrets written to SSM Parameter Store, read back by hosts at boot
(infra/ssm_secrets.py, which needs no Pulumi: hosts do not install it).

The program writes each secret as a SecureString under `/photostack/<stack>/<name>`; a host reads
only the ones its role needs (its instance profile allows nothing else). No secret is ever in
user_data, tags, outputs or the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.secrets import ROTATABLE
from infra.ssm_secrets import parameter_name
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
