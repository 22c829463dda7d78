"""Fault drills on the real one-box, under bounded loopback load. Each drill recovers with `ops`
commands and leaves the stack as it found it: `ops converge --check` finds nothing to change."""

from __future__ import annotations

import pytest

from ops.stack import Stack
from tests.drills.desired import pending


@pytest.fixture
def converged(onebox: Stack):
    """The one-box; after the drill `ops converge --check` (every role) must find nothing to
    change, whatever ran before or runs next. If it does, the drill fails and the box is converged
    again for the tests after it (others share the box)."""
    yield onebox
    left = pending(onebox)
    if left:
        onebox.converge(onebox.hosts)
    assert not left, f"the drill left the one-box out of its desired state: {left}"
