"""The health watcher is no path to root: it runs as its own unprivileged account, writes only its
own home, holds no secret, and pages through a root-owned hook that sudo allows with no arguments
and that pages for the watcher config's own targets only.

Before the fix the watcher ran as root, with the stack's secrets and alert state, and its shell
appended its log as root to /var/log/photostack/, a directory the app's account owns: a link
planted there made root append to any file.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from infra.config import REPO_ROOT, load_stack_config
from infra.inventory import onebox_hosts
from monitoring.alerts.alert_store import AlertStore
from monitoring.agents.health_watcher import SudoPager
from monitoring.agents.health_watcher import Verdict, Watcher, WatcherConfig
from ops.maintenance import restart_script
from ops.remote import run_step
from infra.role_settings import declared
from roles.context import RoleContext
from roles.engine.resources import Directory, File, Service
from roles.munin_master.role import desired, watcher_config
from tests.drills.faults import wait_for

DEFAULTS = declared("munin_master")
USER, HOME = DEFAULTS["munin_master_watcher_user"], DEFAULTS["munin_master_watcher_home"]
PLANTED = """import os
open({marker!r}, "w").write(str(os.getuid()))
"""


def context() -> RoleContext:
    config = load_stack_config("onebox")
    hosts = tuple(onebox_hosts(config))
    return RoleContext(config, "onebox", hosts[0], hosts, lambda name: "unused")


def install_hook(tmp_path: Path) -> tuple[Path, Path]:
    """The role's hook script and watcher config, rendered into `tmp_path` (state under it)."""
    ctx = context()
    config = tmp_path / "health_watcher.json"
    config.write_text(watcher_config(ctx).to_json())
    hook = tmp_path / "photostack-health-alert"
    hook.write_text(ctx.template("munin_master", "health-alert-hook.j2", python=sys.executable, repo=str(REPO_ROOT),
                                 state_root=str(tmp_path / "state"), watcher_config=str(config)))
    hook.chmod(0o755)
    return hook, config


def verdict(node: str, action: str = "trigger", failures: int = 2, error: str = "refused") -> str:
    return json.dumps({"action": action, "node": node, "failures": failures, "error": error}) + "\n"


def test_the_watcher_runs_as_its_own_account_and_root_writes_nothing_in_its_home() -> None:
    state = desired(context())
    [watcher] = [r for r in state.resources if isinstance(r, Service) and r.name == "photostack-health-watcher"]
    assert f"--chuid {USER} " in watcher.start
    assert f">>{HOME}/" in watcher.start  # its log: opened by its own shell, in its own home
    assert "PHOTOSTACK_STATE_DIR" not in watcher.start  # no secrets, no alert state
    home = [r for r in state.resources if isinstance(r, Directory) and r.path == HOME]
    assert [(d.owner, d.mode) for d in home] == [(USER, 0o700)]
    # Root writes (files, other directories) stay out of the account's home.
    assert not [r.path for r in state.resources if isinstance(r, (File, Directory))
                and r.path != HOME and r.path.startswith(HOME.rstrip("/") + "/")]
    sudoers = next(r.content for r in state.resources if isinstance(r, File) and r.path.startswith("/etc/sudoers.d/"))
    rules = [line for line in sudoers.splitlines() if line.startswith(f"{USER} ")]
    assert rules == [f'{USER} ALL=(root) NOPASSWD: {DEFAULTS["munin_master_watcher_hook"]} ""']


def test_the_hook_pages_only_the_watchers_own_targets_and_refuses_a_forged_batch_whole(tmp_path: Path) -> None:
    hook, _ = install_hook(tmp_path)
    store = AlertStore(tmp_path / "state" / "onebox")
    env = {"PATH": "/usr/bin:/bin"}

    forged = subprocess.run([str(hook)], input=verdict("app-0") + verdict("../../etc/passwd"), capture_output=True,
                            text=True, timeout=60, env=env)
    assert forged.returncode == 2
    assert forged.stderr.strip().splitlines() == [
        "health_hook: verdict line 2: node '../../etc/passwd' is not a target of the watcher config"]
    assert store.history() == []  # nothing of the batch was paged

    done = subprocess.run([str(hook)], input=verdict("app-0"), capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    [logged] = store.history()
    # The alert is built from root's config: key, host and URL are not the caller's to choose.
    assert logged["dedup_key"] == "onebox/onebox/health/app-0"
    assert next(t.url for t in watcher_config(context()).targets if t.node == "app-0") in logged["summary"]
    assert json.loads(done.stdout)["outcomes"][0]["dedup_key"] == "onebox/onebox/health/app-0"


def test_the_hook_runs_our_module_whatever_the_callers_directory_and_environment(tmp_path: Path) -> None:
    hook, _ = install_hook(tmp_path)
    evil, marker = tmp_path / "evil", tmp_path / "pwned"
    (evil / "monitoring" / "agents").mkdir(parents=True)
    (evil / "monitoring" / "__init__.py").write_text("")
    (evil / "monitoring" / "agents" / "__init__.py").write_text("")
    (evil / "monitoring" / "agents" / "health_hook.py").write_text(PLANTED.format(marker=str(marker)))

    done = subprocess.run([str(hook)], cwd=evil, input="", capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(evil), "PYTHONSTARTUP": str(evil)})

    assert done.returncode == 0, done.stderr
    assert not marker.exists()


def test_the_watchers_verdicts_reach_the_pipeline_through_the_hook(tmp_path: Path) -> None:
    hook, config_path = install_hook(tmp_path)
    config = WatcherConfig.from_json(config_path.read_text())
    app0 = next(t for t in config.targets if t.node == "app-0")
    down = {app0.url}
    watcher = Watcher(config, SudoPager(str(hook), sudo=()), lambda url, _: (url not in down, "refused"))
    try:
        for _ in range(config.failures_to_page):
            watcher.round()
        down.clear()
        for _ in range(config.successes_to_resolve):
            watcher.round()
    finally:
        watcher.close()
    actions = [(r["action"], r["dedup_key"]) for r in AlertStore(tmp_path / "state" / "onebox").history()]
    assert ("trigger", "onebox/onebox/health/app-0") in actions
    assert actions[-1] == ("resolve", "onebox/onebox/health/app-0")


def test_verdicts_the_hook_did_not_take_are_handed_over_again_in_order(tmp_path: Path) -> None:
    hook, _ = install_hook(tmp_path)
    pager = SudoPager(str(tmp_path / "not-yet-installed"), sudo=())
    assert [o.status for o in pager.send([Verdict("trigger", "app-0", 2, "refused")])] == ["queued"]
    pager.command = [str(hook)]
    assert [o.status for o in pager.send([Verdict("resolve", "app-0")])] == ["local"]  # the resolve's own
    history = AlertStore(tmp_path / "state" / "onebox").history()
    assert [(r["action"], r["dedup_key"]) for r in history] == [("trigger", "onebox/onebox/health/app-0"),
                                                                ("resolve", "onebox/onebox/health/app-0")]


def running_uids(pidfile: str) -> list[int]:
    pid = Path(pidfile).read_text().split()[0]
    uid_line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
    return [int(u) for u in uid_line.split()[1:]]


@pytest.mark.onebox
def test_the_onebox_watcher_is_unprivileged_and_root_follows_nothing_it_plants(onebox) -> None:
    pidfile = DEFAULTS["munin_master_watcher_pidfile"]
    account = pwd.getpwnam(USER)
    assert set(running_uids(pidfile)) == {account.pw_uid} and account.pw_uid != 0
    assert (os.stat(HOME).st_uid, os.stat(HOME).st_mode & 0o777) == (account.pw_uid, 0o700)

    as_watcher = ["runuser", "-u", USER, "--", "sh", "-c"]
    victim = Path(f"/etc/photostack-victim-{secrets.token_hex(4)}")
    victim.write_text("original\n")
    evil, marker = Path(HOME) / f"evil-{secrets.token_hex(4)}", Path(f"/tmp/photostack-pwned-{secrets.token_hex(4)}")
    log = Path(DEFAULTS["munin_master_watcher_log"])
    host = onebox.hosts[0]
    watcher = next(s for s in onebox.services(host).resources if s.name == "photostack-health-watcher")
    try:
        # The account swaps its log for a link to a root-owned file; root restarts the watcher.
        subprocess.run([*as_watcher, f"rm -f {log} && ln -s {victim} {log}"], check=True)
        run_step(host, onebox.ssh, "restart the watcher", restart_script([watcher]))
        # Its own shell cannot open the link for its log, so it stops at once (a root one would run).
        wait_for(lambda: not Path(f"/proc/{Path(pidfile).read_text().split()[0]}").exists(), 30)
        assert victim.read_text() == "original\n"

        # Through sudo: the hook with no arguments only; forged nodes and planted modules refused.
        hook = DEFAULTS["munin_master_watcher_hook"]
        code = shlex.quote(PLANTED.format(marker=str(marker)))
        subprocess.run([*as_watcher, f"mkdir -p {evil}/monitoring/agents && : > {evil}/monitoring/__init__.py "
                                     f"&& : > {evil}/monitoring/agents/__init__.py "
                                     f"&& printf %s {code} > {evil}/monitoring/agents/health_hook.py"], check=True)
        planted = subprocess.run([*as_watcher, f"cd {evil} && PYTHONPATH={evil} /usr/bin/sudo -n {hook}"], input="",
                                 capture_output=True, text=True, timeout=60)
        widened = subprocess.run([*as_watcher, f"/usr/bin/sudo -n {hook} --config /etc/passwd"], input="",
                                 capture_output=True, text=True, timeout=60)
        forged = subprocess.run([*as_watcher, f"/usr/bin/sudo -n {hook}"], input=verdict("postgres-0"),
                                capture_output=True, text=True, timeout=60)
        assert planted.returncode == 0, planted.stderr  # the real hook ran, as root
        assert not marker.exists()
        assert widened.returncode != 0
        assert forged.returncode == 2 and "not a target of the watcher config" in forged.stderr
    finally:
        subprocess.run([*as_watcher, f"rm -rf {log} {HOME}/evil-*"], check=True)
        victim.unlink()
        marker.unlink(missing_ok=True)
        run_step(host, onebox.ssh, "restart the watcher", restart_script([watcher]))
    assert set(running_uids(pidfile)) == {account.pw_uid}
