"""Inventory: the hosts of a stack, the roles each runs and the nodes (service instances) it holds.

One-box: one host, this machine over SSH on loopback, holding every node.
AWS: one host per node, found from EC2 tags (see `infra/aws_inventory.py`), reached through the bastion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from infra.config import StackConfig
from infra.topology import COMMON_ROLES, Node, Role, nodes

# Tags every EC2 instance carries; the AWS inventory is read back from them.
TAG_STACK = "photostack:stack"
TAG_ROLE = "photostack:role"
TAG_NODE = "photostack:node"
# A database instance's own data volume (its id): the host finds the device by it.
TAG_DATA_VOLUME = "photostack:data-volume"

# Roles that ride along with others: pgbouncer pools sit on every host that talks to the shards.
CO_LOCATED: dict[str, tuple[str, ...]] = {"app": ("pgbouncer",), "worker": ("pgbouncer",)}

# Converge order: the order the roles are declared in (infra/topology.py).
ROLE_ORDER: tuple[Role, ...] = get_args(Role)


@dataclass(frozen=True)
class Host:
    """A machine the engine converges over SSH."""

    name: str
    address: str
    port: int
    user: str
    nodes: tuple[Node, ...]
    gateway: str | None = None  # "user@bastion:port" for hosts only reachable through a bastion
    data_volume: str | None = None  # id of the host's own data volume (AWS: EBS), if it has one

    @property
    def roles(self) -> tuple[str, ...]:
        """Roles of this host, in converge order."""
        wanted = set(COMMON_ROLES)
        for node in self.nodes:
            wanted.add(node.role)
            wanted.update(CO_LOCATED.get(node.role, ()))
        return tuple(r for r in ROLE_ORDER if r in wanted)

    def nodes_of(self, role: str) -> list[Node]:
        return [n for n in self.nodes if n.role == role]


def onebox_hosts(config: StackConfig) -> list[Host]:
    """The one-box: a single host on loopback running every node of the stack."""
    box = config.onebox
    return [Host("onebox", box.address, box.ssh_port, "root", tuple(nodes(config)))]


def select(hosts: list[Host], name: str | None = None, role: str | None = None) -> list[Host]:
    """Hosts filtered by name and/or role (the `--host` / `--role` options)."""
    return [
        h for h in hosts if (name is None or h.name == name) and (role is None or role in h.roles)
    ]
