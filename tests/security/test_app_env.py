"""app.env is sourced by sh (`set -a; . app.env`): a secret holding shell syntax must arrive intact
and run nothing. Django's own generated keys use `$&(*)#`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from infra.config import load_stack_config
from infra.inventory import onebox_hosts
from roles.app.runtime import app_env
from roles.context import RoleContext


def test_secrets_with_shell_syntax_are_read_back_literally(tmp_path: Path, state_root: Path) -> None:
    marker = tmp_path / "ran"
    nasty = {
        "djangoSecretKey": f"k$(touch {marker})`touch {marker}`&x#y z'q\"\\$HOME*",
        "dbPassword": f"p ;touch {marker}; #$&(*)",
    }
    config = load_stack_config("onebox")
    hosts = tuple(onebox_hosts(config))
    ctx = RoleContext(config, "onebox", hosts[0], hosts, lambda name: nasty.get(name, "plain"))
    env_file = tmp_path / "app.env"
    env_file.write_text(app_env(ctx))

    done = subprocess.run(["sh", "-c", f"set -a; . {env_file}; set +a; env -0"], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin"}, check=True)

    env = dict(item.split("=", 1) for item in done.stdout.split("\0") if "=" in item)
    assert env["DJANGO_SECRET_KEY"] == nasty["djangoSecretKey"]
    assert env["PHOTOSTACK_DB_PASSWORD"] == nasty["dbPassword"]
    assert not marker.exists()
