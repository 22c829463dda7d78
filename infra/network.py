"""The network: a VPC with a public and a private subnet per availability zone, NAT and routes.

Public subnets hold the load balancer, the NAT gateways and the bastion; every service host sits
in a private subnet and reaches the internet (apt, S3, SSM) through its zone's NAT gateway, so
losing one zone does not cut the others off.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config_checks import subnet_prefix
from infra.tagging import tags

ROLE = "network"


@dataclass(frozen=True)
class NetworkArgs:
    """Inputs of the network."""

    stack: str
    """Stack name, for tags."""
    cidr: str
    """VPC address range; each subnet gets a /20 (or smaller) slice of it."""
    zones: list[str]
    """Availability zones; one public and one private subnet in each."""


def subnet_cidrs(cidr: str, zones: int) -> tuple[list[str], list[str]]:
    """Public and private subnet ranges: equal slices of `cidr`, public ones first."""
    # Config validation (infra/targets/aws_config.py) has checked that these slices fit and are large enough.
    network = ipaddress.ip_network(cidr)
    new_prefix = subnet_prefix(cidr, zones)
    slices = [str(s) for s in network.subnets(new_prefix=new_prefix)]
    return slices[:zones], slices[zones : 2 * zones]


class Network(pulumi.ComponentResource):
    """VPC, subnets in every zone, internet gateway, one NAT gateway per zone and the routes."""

    vpc_id: pulumi.Output[str]
    public_subnet_ids: dict[str, pulumi.Output[str]]
    private_subnet_ids: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("photostack:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags=tags(args.stack, ROLE, "vpc"),
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags=tags(args.stack, ROLE, "igw"), opts=child
        )
        public_table = aws.ec2.RouteTable(
            f"{name}-public", vpc_id=vpc.id, tags=tags(args.stack, ROLE, "public"), opts=child
        )
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_table.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=gateway.id,
            opts=child,
        )
        public_cidrs, private_cidrs = subnet_cidrs(args.cidr, len(args.zones))
        self.public_subnet_ids = {}
        self.private_subnet_ids = {}
        for zone, public_cidr, private_cidr in zip(args.zones, public_cidrs, private_cidrs):
            public = aws.ec2.Subnet(
                f"{name}-public-{zone}",
                vpc_id=vpc.id,
                cidr_block=public_cidr,
                availability_zone=zone,
                tags=tags(args.stack, ROLE, f"public-{zone}"),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{zone}", subnet_id=public.id, route_table_id=public_table.id, opts=child
            )
            eip = aws.ec2.Eip(f"{name}-nat-{zone}", domain="vpc", tags=tags(args.stack, ROLE, f"nat-{zone}"), opts=child)
            nat = aws.ec2.NatGateway(
                f"{name}-nat-{zone}",
                subnet_id=public.id,
                allocation_id=eip.id,
                tags=tags(args.stack, ROLE, f"nat-{zone}"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
            )
            private = aws.ec2.Subnet(
                f"{name}-private-{zone}",
                vpc_id=vpc.id,
                cidr_block=private_cidr,
                availability_zone=zone,
                tags=tags(args.stack, ROLE, f"private-{zone}"),
                opts=child,
            )
            table = aws.ec2.RouteTable(
                f"{name}-private-{zone}", vpc_id=vpc.id, tags=tags(args.stack, ROLE, f"private-{zone}"), opts=child
            )
            aws.ec2.Route(
                f"{name}-private-{zone}-default",
                route_table_id=table.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nat.id,
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{zone}", subnet_id=private.id, route_table_id=table.id, opts=child
            )
            self.public_subnet_ids[zone] = public.id
            self.private_subnet_ids[zone] = private.id
        self.vpc_id = vpc.id
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
            }
        )
