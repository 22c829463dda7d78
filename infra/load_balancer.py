"""The public entry: an ALB terminating TLS (ACM certificate) in front of the nginx tier.

Port 80 only redirects to HTTPS; targets are the nginx instances, healthy while `/health` answers 200.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.tagging import tags

ROLE = "lb"
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# nginx answers /health itself after checking the app behind it; 2 good probes bring a host in,
# 3 bad ones (30 s) take it out.
HEALTH_CHECK = {
    "path": "/health",
    "protocol": "HTTP",
    "port": "traffic-port",
    "matcher": "200",
    "interval": 10,
    "timeout": 5,
    "healthy_threshold": 2,
    "unhealthy_threshold": 3,
}


@dataclass(frozen=True)
class LoadBalancerArgs:
    """Inputs of the load balancer."""

    stack: str
    """Stack name, for tags."""
    vpc_id: pulumi.Input[str]
    """VPC of the target group."""
    subnet_ids: list[pulumi.Input[str]]
    """Public subnets, one per AZ."""
    security_group_id: pulumi.Input[str]
    """The LB's group: 443 and 80 from the world, out only to nginx."""
    certificate_arn: pulumi.Input[str]
    """Validated ACM certificate of the domain."""
    targets: dict[str, pulumi.Input[str]]
    """nginx node name to instance id."""
    target_port: int = 80
    """Port nginx listens on."""


class LoadBalancer(pulumi.ComponentResource):
    """ALB, the nginx target group and its attachments, the HTTPS listener and the HTTP redirect."""

    dns_name: pulumi.Output[str]
    zone_id: pulumi.Output[str]

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("photostack:lb:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        lb = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=False,
            subnets=args.subnet_ids,
            security_groups=[args.security_group_id],
            drop_invalid_header_fields=True,
            tags=tags(args.stack, ROLE, "alb"),
            opts=child,
        )
        group = aws.lb.TargetGroup(
            f"{name}-nginx",
            port=args.target_port,
            protocol="HTTP",
            target_type="instance",
            vpc_id=args.vpc_id,
            health_check=HEALTH_CHECK,
            deregistration_delay=30,
            tags=tags(args.stack, ROLE, "nginx-targets"),
            opts=child,
        )
        for node, instance_id in sorted(args.targets.items()):
            aws.lb.TargetGroupAttachment(
                f"{name}-{node}", target_group_arn=group.arn, target_id=instance_id, port=args.target_port, opts=child
            )
        aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=lb.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=TLS_POLICY,
            certificate_arn=args.certificate_arn,
            default_actions=[{"type": "forward", "target_group_arn": group.arn}],
            tags=tags(args.stack, ROLE, "https"),
            opts=child,
        )
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=lb.arn,
            port=80,
            protocol="HTTP",
            default_actions=[
                {"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"}}
            ],
            tags=tags(args.stack, ROLE, "http-redirect"),
            opts=child,
        )
        self.dns_name = lb.dns_name
        self.zone_id = lb.zone_id
        self.register_outputs({"dns_name": self.dns_name, "zone_id": self.zone_id})
