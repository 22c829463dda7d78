"""What the lab realises: the instances of a stack's offline plan (the Pulumi program's own output).

The plan is made by `infra.offline_plan.run_plan` exactly as `ops plan` makes it; this module only reads
it: each `aws:ec2/instance` with its tags, planned private (and public) address and the rendered
user_data text.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from infra.config import StackConfig
from infra.offline_plan import Plan, reveal, run_plan

INSTANCE = "aws:ec2/instance:Instance"
TAG_NODE = "photostack:node"
TAG_ROLE = "photostack:role"


@dataclass(frozen=True)
class Instance:
    """One planned EC2 instance."""

    resource: str
    node: str
    role: str
    private_ip: str
    public_ip: str | None
    user_data: str
    tags: dict[str, str]


@dataclass(frozen=True)
class LabPlan:
    """The plan of one stack, as the lab needs it."""

    stack: str
    network: ipaddress.IPv4Network
    instances: tuple[Instance, ...]
    plan: Plan


def lab_plan(config: StackConfig, stack: str) -> LabPlan:
    """Run the program offline and collect its instances (bastion first: it is the way in)."""
    plan = run_plan(config, stack)
    instances = []
    for resource in plan.of_type(INSTANCE):
        inputs, outputs = reveal(resource.inputs), reveal(resource.outputs)
        tags = inputs.get("tags") or {}
        instances.append(Instance(resource.name, tags[TAG_NODE], tags[TAG_ROLE], outputs["privateIp"],
                                  outputs.get("publicIp"), inputs.get("userData") or "", tags))
    instances.sort(key=lambda i: (i.role != "bastion", i.node))
    return LabPlan(stack, ipaddress.ip_network(config.vpc_cidr), tuple(instances), plan)
