"""Tags every AWS resource of the program carries: the stack, the role it serves, a readable Name.

The AWS inventory (`infra/aws_inventory.py`) and the policy pack read these keys back, so they are
built in one place.
"""

from __future__ import annotations

from infra.inventory import TAG_NODE, TAG_ROLE, TAG_STACK


def tags(stack: str, role: str, name: str, node: str | None = None) -> dict[str, str]:
    """Tags of one resource: stack, role, Name and, for instances, the node it runs."""
    result = {TAG_STACK: stack, TAG_ROLE: role, "Name": f"photostack-{stack}-{name}"}
    if node is not None:
        result[TAG_NODE] = node
    return result
