"""One owner of the ids' epoch: the stack config's postgres.idEpochMs reaches both the postgres
role's next_id() and the app (which decodes ids and re-renders next_id() in migration 0000).
Before, app.env never carried it and the app silently used Instagram's epoch."""

from __future__ import annotations

import subprocess
from pathlib import Path

from app.config import load_app_config
from infra.config import INSTAGRAM_EPOCH_MS, load_stack_config
from infra.inventory import onebox_hosts
from roles.app.runtime import app_env
from roles.context import RoleContext
from roles.postgres.commands import logical_shards_sql

CUSTOM_EPOCH_MS = 1_600_000_000_000


def test_a_custom_epoch_reaches_the_app_and_next_id(tmp_path: Path, state_root: Path) -> None:
    loaded = load_stack_config("onebox")
    config = loaded.model_copy(update={"postgres": loaded.postgres.model_copy(update={"id_epoch_ms": CUSTOM_EPOCH_MS})})
    hosts = tuple(onebox_hosts(config))
    ctx = RoleContext(config, "onebox", hosts[0], hosts, lambda name: "x")
    env_file = tmp_path / "app.env"
    env_file.write_text(app_env(ctx))
    sourced = subprocess.run(["sh", "-c", f"set -a; . {env_file}; set +a; env -0"], capture_output=True,
                             text=True, check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    env = dict(item.split("=", 1) for item in sourced.split("\0") if "=" in item)

    assert CUSTOM_EPOCH_MS != INSTAGRAM_EPOCH_MS
    assert load_app_config(env).id_epoch_ms == CUSTOM_EPOCH_MS
    assert str(CUSTOM_EPOCH_MS) in logical_shards_sql([0], config.postgres.id_epoch_ms)
