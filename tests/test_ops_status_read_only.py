"""`ops status` only reads: on a state dir with nothing in it, it generates no secrets, stores
no shard map and makes no SSH keys (the hosts are then unreachable, which it reports, exit 1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_status_on_an_empty_state_dir_writes_no_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = subprocess.run([sys.executable, "-m", "ops", "--stack", "onebox", "status", "--json"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PHOTOSTACK_STATE_DIR": str(state)})
    assert result.returncode == 1, result.stderr
    view = json.loads(result.stdout)
    assert not view["healthy"] and view["services"], view
    written = [p for p in state.rglob("*") if not p.is_dir()]
    assert written == [], written
