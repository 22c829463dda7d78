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


# Where a data volume's host mounts it (the role's data path): one place that says so for the program,
# the roles and an operator looking at the volume.
TAG_MOUNT = "photostack:mount"

# A dashboard listener rule that forwards because the nginx behind it asks for the password login
# (monitoring.dashboardPassword) says so, for the policy pack, which also wants that login's
# password in the plan.
LOGIN_TAG = "photostack:login"
PASSWORD_LOGIN = "nginx-password"
