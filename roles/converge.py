"""Desired state of a whole host: its roles, in converge order, merged into one."""

from __future__ import annotations

from roles.context import RoleContext, desired_state
from roles.engine.resources import DesiredState


def host_state(ctx: RoleContext, only: set[str] | None = None) -> DesiredState:
    """Everything the host's roles want (optionally only some roles), in converge order."""
    state = DesiredState()
    for role in ctx.host.roles:
        if only is None or role in only:
            state.extend(desired_state(role, ctx))
    return state
