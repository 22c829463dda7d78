"""The git-ignored state dir: per-stack keys, generated secrets and runtime records.

`.state/<stack>/` under the repository (or `$PHOTOSTACK_STATE_DIR/<stack>/`). Nothing in it is
ever committed; losing it loses the one-box's generated passwords, not its data.
"""

from __future__ import annotations

import os
from pathlib import Path

from infra.config import REPO_ROOT


def state_dir(stack: str) -> Path:
    """The state dir of `stack`, created on first use with owner-only permissions."""
    root = Path(os.environ.get("PHOTOSTACK_STATE_DIR", REPO_ROOT / ".state"))
    path = root / stack
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
