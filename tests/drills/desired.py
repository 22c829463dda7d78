"""`ops converge --check` after a day-2 command: the command must leave every role in its desired
state (issue 20, item 7), so the check finds nothing to change."""

from __future__ import annotations

from typing import get_args

from infra.topology import Role
from ops.stack import Stack


def pending(stack: Stack, but: frozenset[str] = frozenset()) -> list[str]:
    """What `ops converge --check` would change on the stack's hosts (every role but `but`), and
    what it could not check, one line each."""
    roles = set(get_args(Role)) - but
    results = stack.converge(stack.hosts, roles, check=True)
    return ([f"{r.host.name}: would change {c.resource} ({c.summary})" for r in results for c in r.changed]
            + [f"{r.host.name}: {what}: {why}" for r in results for what, why in r.failed])


def assert_converged(stack: Stack, after: str, but: frozenset[str] = frozenset()) -> None:
    """Nothing left to change after the day-2 command `after`."""
    left = pending(stack, but)
    assert not left, f"after {after}, `ops converge --check` finds changes pending: {left}"
