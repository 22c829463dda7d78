"""munin → root: Munin's contact hook runs as root through sudo; nothing munin controls (its working
directory, its environment, extra arguments) may choose the code that runs.

Before the fix the sudoers rule allowed `python -m monitoring.agents.munin_alert`, and `-m` put the
caller's working directory first on sys.path: a `monitoring/agents/munin_alert.py` in a munin-owned
directory ran as uid 0.
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from infra.config import REPO_ROOT, load_stack_config
from infra.inventory import onebox_hosts
from roles.context import RoleContext

PLANTED = """import os
open({marker!r}, "w").write(str(os.getuid()))
"""


def plant(directory: Path, marker: Path) -> None:
    """A `monitoring.agents` package whose munin_alert module leaves `marker` if it ever runs."""
    package = directory / "monitoring" / "agents"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "munin_alert.py").write_text(PLANTED.format(marker=str(marker)))


def test_the_hook_runs_our_module_whatever_the_callers_directory_and_environment(tmp_path: Path) -> None:
    config = load_stack_config("onebox")
    hosts = tuple(onebox_hosts(config))
    ctx = RoleContext(config, "onebox", hosts[0], hosts, lambda name: "unused")
    hook = tmp_path / "hook"
    hook.write_text(ctx.template("munin_master", "munin-alert-hook.j2", python=sys.executable,
                                 repo=str(REPO_ROOT), state_root=str(tmp_path / "state"), stack="onebox"))
    evil, marker = tmp_path / "evil", tmp_path / "pwned"
    plant(evil, marker)

    done = subprocess.run(["sh", str(hook)], cwd=evil, input="", capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(evil), "PYTHONSTARTUP": str(evil)})

    assert done.returncode == 0, done.stderr
    assert not marker.exists()


@pytest.mark.onebox
def test_munin_cannot_run_its_own_code_as_root_through_the_contact_hook(onebox) -> None:
    conf = Path("/etc/munin/munin.conf").read_text()
    command = next(line.split(" ", 1)[1] for line in conf.splitlines()
                   if line.startswith("contact.photostack.command "))
    evil = Path(f"/var/lib/munin/evil-{secrets.token_hex(4)}")
    marker = Path(f"/tmp/photostack-pwned-{secrets.token_hex(4)}")
    as_munin = ["runuser", "-u", "munin", "--", "sh", "-c"]
    code = shlex.quote(PLANTED.format(marker=str(marker)))
    subprocess.run([*as_munin, f"mkdir -p {evil}/monitoring/agents && : > {evil}/monitoring/__init__.py "
                               f"&& : > {evil}/monitoring/agents/__init__.py "
                               f"&& printf %s {code} > {evil}/monitoring/agents/munin_alert.py"], check=True)
    try:
        hook = subprocess.run([*as_munin, f"cd {evil} && PYTHONPATH={evil} {command}"], input="",
                              capture_output=True, text=True, timeout=60)
        widened = subprocess.run([*as_munin, f"cd {evil} && {command} --stack prod"], input="",
                                 capture_output=True, text=True, timeout=60)

        assert hook.returncode == 0, hook.stderr  # the real hook ran, as root
        assert not marker.exists()
        assert widened.returncode != 0  # sudo allows the hook with no arguments only
    finally:
        subprocess.run(["rm", "-rf", str(evil)], check=True)
        marker.unlink(missing_ok=True)
