"""Desired state of a whole host: its roles, in converge order, merged into one."""

from __future__ import annotations

from roles.engine.context import ROLES_DIR, RoleContext, desired_state
from roles.engine.resources import DesiredState


def available_roles() -> list[str]:
    """Roles that have a module (`roles/<name>/role.py`)."""
    return sorted(p.parent.name for p in ROLES_DIR.glob("*/role.py"))


def host_state(ctx: RoleContext, only: set[str] | None = None) -> DesiredState:
    """Everything the host's roles want (optionally only some roles), in converge order."""
    known = set(available_roles())
    state = DesiredState()
    for role in ctx.host.roles:
        if role in known and (only is None or role in only):
            state.extend(desired_state(role, ctx))
    return state


def missing_roles(roles: tuple[str, ...]) -> list[str]:
    """Roles the inventory asks for that have no module."""
    known = set(available_roles())
    return [r for r in roles if r not in known]
