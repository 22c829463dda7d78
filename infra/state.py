"""The git-ignored state dir: per-stack keys, generated secrets and runtime records.

`.state/<stack>/` under the repository (or `$PHOTOSTACK_STATE_DIR/<stack>/`). Nothing in it is
ever committed; losing it loses the one-box's generated passwords, not its data.

A host of an AWS stack keeps its own state under `host_layout.STATE_ROOT`: its boot converge runs
with it as `$PHOTOSTACK_STATE_DIR` (infra/templates/user_data.sh.j2), and the monitoring host's
alert hooks keep the stack's alert state there, wherever the converge that wrote them ran.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from infra.config import REPO_ROOT
from infra.host_layout import STATE_ROOT


def state_dir(stack: str) -> Path:
    """The state dir of `stack`, created on first use with owner-only permissions."""
    root = Path(os.environ.get("PHOTOSTACK_STATE_DIR", REPO_ROOT / ".state"))
    path = root / stack
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def host_state_dir(stack: str) -> PurePosixPath:
    """The state dir of `stack` on one of its AWS hosts (a path there, not on this machine)."""
    return STATE_ROOT / stack
