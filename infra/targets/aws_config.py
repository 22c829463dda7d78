"""What a stack config must say on the AWS target (the lab included), and what it defaults to:
the rules that follow AWS's documented limits (a zone belongs to its region, subnets are /28 or
larger, an ALB's subnets /27 or larger, five addresses of every subnet are AWS's own).

Read by the config parser through infra/targets/kinds.py, before there is a Target to ask.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from infra.config_checks import Problems, subnet_prefix

if TYPE_CHECKING:
    from infra.config import StackConfig

SUBNET_MIN_PREFIX = 28  # AWS: the smallest subnet is a /28
ALB_SUBNET_MAX_PREFIX = 27  # AWS: an ALB's subnets need a /27 and 8 free addresses
AWS_RESERVED_PER_SUBNET = 5


class AwsRules:
    """The AWS target's config rules."""

    # AWS hosts boot Ubuntu 24.04 (the only image the program accepts); its archive has 16, not 15.
    distro_postgres_major = 16
    checks_aws_names = True
    secrets_in_stack_file = True

    def plain_secret_problem(self, name: str, value: Any) -> str | None:
        """Why a secret key's value cannot stand in the stack file, or None: only as a Pulumi secret."""
        if isinstance(value, dict) and set(value) == {"secure"}:
            return None
        return f"is a secret; store it with `pulumi config set --secret {name}`, not in plain text"

    def own_secrets(self, config: StackConfig) -> list[str]:
        """The secrets only this target needs: the dashboards' OIDC login. The program creates the
        PagerDuty integration and the Sentry key itself and hands their routing key and DSN to
        the hosts (infra/alerting.py)."""
        return ["dashboardOidcClientSecret"] if config.monitoring.dashboard_login is not None else []

    def problems(self, config: StackConfig) -> Problems:
        """Every rule of the AWS target's own."""
        return aws_shape(config) + network(config) + hosted_zone(config)


def aws_shape(config: StackConfig) -> Problems:
    """What an AWS stack needs: a pinned image, two zones, a web tier, a zone per replica."""
    problems: Problems = []
    if config.ami is None:
        problems.append(("ami", "required on AWS (an Ubuntu 24.04 image id; see docs/aws.md \"The image, pinned\")"))
    distinct = len(set(config.availability_zones))
    if distinct < 2:
        problems.append(("availabilityZones", "needs at least 2 distinct zones on AWS"))
    for tier in ("nginx", "app"):
        if getattr(config.fleets, tier).count < 1:
            problems.append((f"fleets.{tier}.count", "must be at least 1 on AWS"))
    if distinct >= 2 and config.postgres.replicas_per_shard > distinct - 1:
        problems.append(("postgres.replicasPerShard", f"{config.postgres.replicas_per_shard} replicas need "
                         f"{config.postgres.replicas_per_shard + 1} availability zones (each replica sits in "
                         f"another zone than its primary); {distinct} given"))
    return problems


def network(config: StackConfig) -> Problems:
    """The VPC holds a public and a private subnet per zone, each large enough for what it holds."""
    from infra.topology import nodes

    zone_count = len(config.availability_zones)
    prefix = subnet_prefix(config.vpc_cidr, zone_count)
    if prefix > SUBNET_MIN_PREFIX:
        return [("vpcCidr", f"{config.vpc_cidr} is too small for {zone_count} public and {zone_count} private "
                            f"subnets (each would be a /{prefix}; AWS's smallest is a /{SUBNET_MIN_PREFIX})")]
    problems: Problems = []
    usable = (1 << (32 - prefix)) - AWS_RESERVED_PER_SUBNET
    if prefix > ALB_SUBNET_MAX_PREFIX:
        problems.append(("vpcCidr", f"{config.vpc_cidr} gives /{prefix} public subnets; the load balancer "
                                    f"needs /{ALB_SUBNET_MAX_PREFIX} or larger"))
    per_zone = Counter(node.az for node in nodes(config))
    zone, hosts = max(per_zone.items(), key=lambda item: item[1])
    if hosts > usable:
        problems.append(("vpcCidr", f"{config.vpc_cidr} gives /{prefix} private subnets of {usable} usable "
                                    f"addresses; zone {zone} needs {hosts} hosts"))
    return problems


def hosted_zone(config: StackConfig) -> Problems:
    """The hosted zone is the domain or one of its parents, and a real zone (not a top-level domain)."""
    if config.hosted_zone is not None:
        zone, domain = config.hosted_zone.lower(), config.domain.lower()
        if domain != zone and not domain.endswith("." + zone):
            return [("hostedZone", f"'{config.hosted_zone}' is not a suffix of the domain '{config.domain}'")]
        return []
    parent = config.domain.partition(".")[2]
    if "." not in parent:
        return [("domain", f"the hosted zone defaults to the domain's parent '{parent}', a top-level domain; "
                           f"set {'photostack'}:hostedZone (e.g. to '{config.domain}')")]
    return []
