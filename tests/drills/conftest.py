"""Fault drills on the real one-box, under bounded loopback load. Each drill leaves the stack
healthy (converge finds nothing to change) for the next test."""

from __future__ import annotations

import pytest

from ops.stack import Stack


# The roles drills disturb; a converge check of them must find nothing to change afterwards.
DRILLED_ROLES = {"postgres", "pgbouncer", "redis", "memcached", "rabbitmq", "nginx", "app", "worker", "munin_master"}


@pytest.fixture
def converged(onebox: Stack):
    """The one-box; after the drill it is converged again (what `ops up` would do: others share
    the box), and a second converge of the drilled roles must find nothing to change."""
    yield onebox
    onebox.converge(onebox.hosts, DRILLED_ROLES)
    results = onebox.converge(onebox.hosts, DRILLED_ROLES, check=True)
    changes = [f"{r.host.name}: {c.resource} ({c.summary})" for r in results for c in r.changed]
    failures = [f"{r.host.name}: {w}: {why}" for r in results for w, why in r.failed]
    assert not failures and not changes, f"one-box not back to its desired state: {failures + changes}"
