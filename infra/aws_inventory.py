"""The inventory of an AWS stack, read back from EC2 tags.

Every instance the program creates carries `photostack:stack`, `photostack:role` and
`photostack:node`; the node tag names a node of the stack's topology, so a host's roles come from
the same model as the one-box's; a database instance's `photostack:data-volume` names its own data
volume. Hosts sit in private subnets: `ops` reaches them through the
bastion, the one instance tagged with role `bastion`.
"""

from __future__ import annotations

from typing import Any

from infra.config import ConfigError, StackConfig
from infra.inventory import TAG_DATA_VOLUME, TAG_NODE, TAG_ROLE, TAG_STACK, Host
from infra.topology import nodes

BASTION = "bastion"
# Ubuntu cloud images' default user.
SSH_USER = "ubuntu"
SSH_PORT = 22
LIVE_STATES = ("pending", "running")
# Every state in which an instance still holds its node: a stopped or stuck-stopping one is the
# typical instance to replace or to start again. shutting-down/terminated ones are on their way out.
HOLDING_STATES = ("pending", "running", "stopping", "stopped")


def _tags(instance: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


def stack_instances(stack: str, ec2_client: Any) -> list[dict[str, Any]]:
    """Live EC2 instances tagged with `stack` (boto3 `describe_instances`, every page)."""
    paginator = ec2_client.get_paginator("describe_instances")
    filters = [
        {"Name": f"tag:{TAG_STACK}", "Values": [stack]},
        {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
    ]
    return [
        instance
        for page in paginator.paginate(Filters=filters)
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
    ]


def aws_hosts(config: StackConfig, stack: str, ec2_client: Any, user: str = SSH_USER) -> list[Host]:
    """The hosts of `stack` in topology order, each reached through the bastion."""
    instances = stack_instances(stack, ec2_client)
    bastions = [i for i in instances if _tags(i).get(TAG_ROLE) == BASTION and i.get("PublicIpAddress")]
    if not bastions:
        raise ConfigError([f"stack '{stack}': no running bastion (EC2 tag {TAG_STACK}={stack}, {TAG_ROLE}={BASTION}); run `pulumi up -s {stack}`"])
    gateway = f"{user}@{bastions[0]['PublicIpAddress']}:{SSH_PORT}"
    by_node = {_tags(i).get(TAG_NODE): i for i in instances if _tags(i).get(TAG_ROLE) != BASTION}
    hosts = []
    for node in nodes(config):
        instance = by_node.get(node.name)
        if instance is not None:
            hosts.append(Host(node.name, instance["PrivateIpAddress"], SSH_PORT, user, (node,), gateway,
                              _tags(instance).get(TAG_DATA_VOLUME)))
    return hosts


def missing_nodes(config: StackConfig, hosts: list[Host]) -> list[str]:
    """Nodes of the topology with no live instance (not created yet, or terminated)."""
    present = {h.name for h in hosts}
    return [n.name for n in nodes(config) if n.name not in present]


def node_instance(stack: str, node: str, ec2_client: Any) -> dict[str, Any]:
    """The node's one instance in a holding state (`HOLDING_STATES`); ValueError when there is not
    exactly one."""
    filters = [
        {"Name": f"tag:{TAG_STACK}", "Values": [stack]}, {"Name": f"tag:{TAG_NODE}", "Values": [node]},
        {"Name": "instance-state-name", "Values": list(HOLDING_STATES)},
    ]
    found = [i for page in ec2_client.get_paginator("describe_instances").paginate(Filters=filters)
             for r in page["Reservations"] for i in r["Instances"]]
    tagged = f"{TAG_STACK}={stack}, {TAG_NODE}={node}"
    if not found:
        raise ValueError(f"{node}: no live instance tagged {tagged}")
    if len(found) > 1:
        # Acting on them all could take the node down entirely (e.g. during a `pulumi up` that
        # creates the new instance before deleting the old one): which one goes is the operator's call.
        ids = ", ".join(i["InstanceId"] for i in found)
        raise ValueError(f"{node}: {len(found)} live instances tagged {tagged} ({ids}); "
                         "expected one: terminate the stray one yourself")
    return found[0]
