"""DNS: the site's TLS certificate (ACM, validated through Route53) and the alias to the load balancer."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config import StackConfig
from infra.tagging import tags

ROLE = "dns"


def zone_name(config: StackConfig) -> str:
    """The public hosted zone holding the domain: `hostedZone`, or the domain's parent."""
    return config.hosted_zone or config.domain.partition(".")[2]


def zone_id(name: str) -> pulumi.Output[str]:
    """Id of the existing public hosted zone `name` (the program does not own the zone)."""
    return aws.route53.get_zone_output(name=name, private_zone=False).zone_id


@dataclass(frozen=True)
class CertificateArgs:
    """Inputs of the certificate."""

    stack: str
    """Stack name, for tags."""
    domain: str
    """The site's DNS name."""
    zone_id: pulumi.Input[str]
    """Hosted zone the validation record goes in."""


class Certificate(pulumi.ComponentResource):
    """An ACM certificate for the domain, DNS-validated; `arn` resolves once it is issued."""

    arn: pulumi.Output[str]

    def __init__(self, name: str, args: CertificateArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("photostack:dns:Certificate", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        certificate = aws.acm.Certificate(
            f"{name}-cert",
            domain_name=args.domain,
            validation_method="DNS",
            tags=tags(args.stack, ROLE, "certificate"),
            opts=child,
        )
        option = certificate.domain_validation_options[0]
        record = aws.route53.Record(
            f"{name}-validation",
            zone_id=args.zone_id,
            name=option.resource_record_name,
            type=option.resource_record_type,
            records=[option.resource_record_value],
            ttl=60,
            allow_overwrite=True,
            opts=child,
        )
        validation = aws.acm.CertificateValidation(
            f"{name}-validation", certificate_arn=certificate.arn, validation_record_fqdns=[record.fqdn], opts=child
        )
        self.arn = validation.certificate_arn
        self.register_outputs({"arn": self.arn})


@dataclass(frozen=True)
class SiteAliasArgs:
    """Inputs of the site's alias record."""

    domain: str
    """The site's DNS name."""
    zone_id: pulumi.Input[str]
    """Hosted zone of the domain."""
    target_dns_name: pulumi.Input[str]
    """Load balancer DNS name."""
    target_zone_id: pulumi.Input[str]
    """Load balancer's canonical hosted zone."""


class SiteAlias(pulumi.ComponentResource):
    """A Route53 alias (A record) from the domain to the load balancer."""

    fqdn: pulumi.Output[str]

    def __init__(self, name: str, args: SiteAliasArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("photostack:dns:SiteAlias", name, None, opts)
        record = aws.route53.Record(
            f"{name}-a",
            zone_id=args.zone_id,
            name=args.domain,
            type="A",
            aliases=[{"name": args.target_dns_name, "zone_id": args.target_zone_id, "evaluate_target_health": True}],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.fqdn = record.fqdn
        self.register_outputs({"fqdn": self.fqdn})
