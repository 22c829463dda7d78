"""Security groups per role, least privilege: each group admits only the peers that talk to it.

The rules are data (`ingress_rules`, `egress_rules`) so tests and the policy pack can read them;
`SecurityGroups` turns them into one group per role and one rule resource per (port, source).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.tagging import tags
from infra.topology import STANDARD_PORTS

WORLD = "0.0.0.0/0"

# The port each service listens on when it has a host to itself (AWS).
PORTS = {
    **STANDARD_PORTS,
    "https": 443,
    "http": STANDARD_PORTS["nginx"],
    "ssh": 22,
    "epmd": 4369,
    "rabbitmq_dist": 25672,
}

# Groups of hosts that run services (every one runs base + munin_node), then the edge groups.
HOST_GROUPS = ("nginx", "app", "worker", "postgres", "redis", "memcached", "rabbitmq", "munin_master")
GROUPS = ("lb", "bastion", *HOST_GROUPS)
# Hosts that open connections to the data tier: the app and the Celery workers (with their pgbouncer).
CLIENTS = ("app", "worker")


@dataclass(frozen=True)
class Rule:
    """One allowed flow into (ingress) or out of (egress) `group` on a TCP port."""

    group: str
    port: int
    peer_group: str | None = None
    cidr: str | None = None
    description: str = ""

    @property
    def peer(self) -> str:
        return self.peer_group or self.cidr or "?"


def ingress_rules(admin_cidrs: list[str]) -> list[Rule]:
    """Every ingress rule of the stack: who may open a connection to whom, on which port."""
    rules = [
        Rule("lb", PORTS["https"], cidr=WORLD, description="HTTPS from the internet"),
        Rule("lb", PORTS["http"], cidr=WORLD, description="HTTP from the internet (redirected to HTTPS)"),
        Rule("nginx", PORTS["http"], peer_group="lb", description="the load balancer to nginx"),
        Rule("app", PORTS["app"], peer_group="nginx", description="nginx to gunicorn"),
        # The munin master's health watcher probes every nginx and app server's /health.
        Rule("nginx", PORTS["http"], peer_group="munin_master", description="health watcher to nginx"),
        Rule("app", PORTS["app"], peer_group="munin_master", description="health watcher to gunicorn"),
        Rule("postgres", PORTS["postgres"], peer_group="postgres", description="streaming replication"),
        Rule("redis", PORTS["redis"], peer_group="redis", description="replica to primary"),
        Rule("rabbitmq", PORTS["epmd"], peer_group="rabbitmq", description="cluster peer discovery"),
        Rule("rabbitmq", PORTS["rabbitmq_dist"], peer_group="rabbitmq", description="cluster traffic"),
    ]
    for client in CLIENTS:
        rules += [
            Rule("postgres", PORTS["postgres"], peer_group=client, description=f"{client} pgbouncer to the shards"),
            Rule("redis", PORTS["redis"], peer_group=client, description=f"{client} to redis"),
            Rule("memcached", PORTS["memcached"], peer_group=client, description=f"{client} to memcached"),
            Rule("rabbitmq", PORTS["rabbitmq"], peer_group=client, description=f"{client} to the broker"),
        ]
    for group in HOST_GROUPS:
        rules += [
            Rule(group, PORTS["ssh"], peer_group="bastion", description="SSH only through the bastion"),
            Rule(group, PORTS["munin_node"], peer_group="munin_master", description="munin polling"),
        ]
    rules += [Rule("bastion", PORTS["ssh"], cidr=cidr, description="SSH from admin networks") for cidr in admin_cidrs]
    return rules


def egress_rules(vpc_cidr: str) -> list[Rule]:
    """Every egress rule: the LB reaches only nginx, the bastion only SSH inside the VPC, hosts the VPC and the web."""
    rules = [
        Rule("lb", PORTS["http"], peer_group="nginx", description="to nginx"),
        Rule("bastion", PORTS["ssh"], cidr=vpc_cidr, description="SSH to the hosts"),
    ]
    for group in HOST_GROUPS:
        rules += [
            Rule(group, PORTS["https"], cidr=WORLD, description="S3, SSM and package mirrors over HTTPS"),
            Rule(group, PORTS["http"], cidr=WORLD, description="Ubuntu package mirrors"),
            Rule(group, -1, cidr=vpc_cidr, description="peers inside the VPC"),
        ]
    return rules


@dataclass(frozen=True)
class SecurityGroupsArgs:
    """Inputs of the security groups."""

    stack: str
    """Stack name, for tags."""
    vpc_id: pulumi.Input[str]
    """VPC the groups belong to."""
    vpc_cidr: str
    """VPC range: the hosts' egress to their peers."""
    admin_cidrs: list[str]
    """Networks allowed to SSH to the bastion."""


class SecurityGroups(pulumi.ComponentResource):
    """One security group per role and one rule resource per allowed flow."""

    ids: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: SecurityGroupsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("photostack:security:SecurityGroups", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        groups = {
            group: aws.ec2.SecurityGroup(
                f"{name}-{group}",
                vpc_id=args.vpc_id,
                description=f"photostack {args.stack} {group}",
                tags=tags(args.stack, group, f"sg-{group}"),
                opts=child,
            )
            for group in GROUPS
        }
        for rule in ingress_rules(args.admin_cidrs):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-{rule.group}-in-{rule.port}-{_slug(rule.peer)}",
                **_rule_args(rule, groups),
                tags=tags(args.stack, rule.group, f"{rule.group}-in-{rule.port}"),
                opts=child,
            )
        for rule in egress_rules(args.vpc_cidr):
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-{rule.group}-out-{rule.port}-{_slug(rule.peer)}",
                **_rule_args(rule, groups),
                tags=tags(args.stack, rule.group, f"{rule.group}-out-{rule.port}"),
                opts=child,
            )
        self.ids = {group: sg.id for group, sg in groups.items()}
        self.register_outputs({"ids": self.ids})


def _slug(peer: str) -> str:
    return peer.replace("/", "_").replace(".", "-")


def _rule_args(rule: Rule, groups: dict[str, aws.ec2.SecurityGroup]) -> dict[str, object]:
    # Port -1 means every protocol and port (only used for traffic that stays inside the VPC).
    ports = {"ip_protocol": "-1"} if rule.port == -1 else {"ip_protocol": "tcp", "from_port": rule.port, "to_port": rule.port}
    peer = (
        {"referenced_security_group_id": groups[rule.peer_group].id}
        if rule.peer_group
        else {"cidr_ipv4": rule.cidr}
    )
    return {"security_group_id": groups[rule.group].id, "description": rule.description, **ports, **peer}
