"""The stored shard map owns the shard counts: a stack config stating another physical (or logical)
shard count stops `ops` with one line naming the key, exit 2, before any host is touched."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from infra.config import REPO_ROOT, load_stack_config
from infra.shardstore import shard_map_store


def test_a_physical_shard_count_that_disagrees_with_the_stored_map_exits_2(tmp_path: Path, state_root: Path,
                                                                           monkeypatch) -> None:
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    shutil.copy(REPO_ROOT / "Pulumi.onebox.yaml", stacks / "Pulumi.onebox.yaml")
    monkeypatch.setenv("PHOTOSTACK_STACKS_DIR", str(stacks))
    config = load_stack_config("onebox")
    stored = shard_map_store(config, "onebox").load_or_create(config)  # as the first `ops up` stores it
    doc = yaml.safe_load((stacks / "Pulumi.onebox.yaml").read_text())
    doc["config"]["photostack:postgres"]["physicalShards"] = stored.physical_shards * 2
    (stacks / "Pulumi.onebox.yaml").write_text(yaml.safe_dump(doc))
    before = sorted(p.name for p in (state_root / "onebox").iterdir())

    done = subprocess.run([sys.executable, "-m", "ops", "converge", "--check"], capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT)

    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "photostack:postgres.physicalShards" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in (state_root / "onebox").iterdir()) == before
