"""Scheduled backups and restore drills on the real one-box (roles/postgres/scheduled.py).

1. The schedule is in place: BusyBox crond runs on photostack's own crontab directory, with the
   stack config's times, and the backup script and drill are installed. The crontab's backup
   line, run as crond runs it, backs up every shard (each one's primary is on this host).
2. A drill whose throwaway restore has no room (its scratch directory on a 1 MiB tmpfs) fails
   for real, is recorded, and pages through the one-box's alert path (Munin → munin-limits →
   the alert hook → the alert store); `ops status` shows it critical.
3. `ops restore-drill --shard 0` restores the shard's latest backup plus archive into a
   throwaway cluster and passes: the page resolves, Munin and `ops backups` show the good drill,
   nothing of the copy is left.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from infra import schedule
from monitoring.alerts.alert_store import AlertStore
from ops import backups as bk
from ops.remote import run_step
from roles.postgres import scheduled
from tests.monitoring.test_munin_onebox import run_munin_cron

pytestmark = pytest.mark.onebox

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "pgbackrest_drill_shard0"


def ops(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ops", *args], capture_output=True, text=True, cwd=REPO, timeout=900)


def munin_values(stack, plugin: str) -> dict[str, str]:
    out = run_step(stack.hosts[0], stack.ssh, plugin, f"munin-run {plugin}")
    return dict(line.split(".value ") for line in out.splitlines() if ".value " in line)


def test_the_schedule_runs_on_its_own_crond_with_the_stack_configs_times(onebox):
    host = onebox.hosts[0]
    crontab = run_step(host, onebox.ssh, "crontab", f"cat {scheduled.CRONTAB}")
    drill = schedule.parse(onebox.config.backups.drill_schedule).crontab()
    assert f"\n{drill} {scheduled.DRILL_SCRIPT} --config {scheduled.DRILL_SETTINGS} >>" in crontab
    full = schedule.parse(onebox.config.backups.full_schedule).crontab()
    assert f"\n{full} /usr/local/sbin/photostack-backup full >>" in crontab
    pid = run_step(host, onebox.ssh, "crond", f"start-stop-daemon --status --pidfile {scheduled.CRON_PIDFILE} && "
                   f"cat {scheduled.CRON_PIDFILE}").strip()
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[:5] == [b"/bin/busybox", b"crond", b"-f", b"-c", scheduled.CRON_DIR.encode()]
    assert b"TZ=UTC" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    # The jobs it runs exist and run as postgres.
    run_step(host, onebox.ssh, "installed", f"test -x {scheduled.DRILL_SCRIPT} && test -x /usr/local/sbin/photostack-backup "
             f"&& runuser -u postgres -- test -r {scheduled.DRILL_SETTINGS}")
    # Idempotent: converging the role again changes nothing (crontab, crond, units of work).
    (result,) = onebox.converge(onebox.hosts, {"postgres"}, check=True)
    assert not result.failed and not result.changed, [(c.resource, c.summary) for c in result.changed]


def test_the_crontabs_backup_line_backs_up_every_shard(onebox):
    host = onebox.hosts[0]
    crontab = run_step(host, onebox.ssh, "crontab", f"cat {scheduled.CRONTAB}")
    (line,) = [line for line in crontab.splitlines() if " /usr/local/sbin/photostack-backup diff " in line]
    command = line.split(None, 5)[5]  # after the five time fields: what crond hands to the shell
    shards = range(onebox.config.postgres.physical_shards)
    before = {n: bk.shard_status(onebox, n).newest.label for n in shards}
    logged = int(run_step(host, onebox.ssh, "log length", f"cat {scheduled.SCHEDULE_LOG} 2>/dev/null | wc -l"))
    run_step(host, onebox.ssh, "the scheduled diff backup",
             f"cd / && runuser -u postgres -- env -i TZ=UTC PATH=/usr/sbin:/usr/bin:/sbin:/bin sh -c {shlex.quote(command)}")
    after = {n: bk.shard_status(onebox, n).newest for n in shards}
    assert all(after[n].label != before[n] for n in shards), (before, after)  # a diff (a full if none yet)
    log = run_step(host, onebox.ssh, "schedule log", f"tail -n +{logged + 1} {scheduled.SCHEDULE_LOG}")
    assert all(f"diff backup of shard{n}" in log for n in shards), log
    print(f"scheduled diff backup of {len(shards)} shards: "
          + ", ".join(f"shard{n} {(after[n].stopped - after[n].started).total_seconds():.0f} s" for n in shards))


def test_a_failed_drill_pages_and_a_good_one_resolves_it(onebox):
    host = onebox.hosts[0]
    store = AlertStore(onebox.state)
    key = f"onebox/{host.name}/{PLUGIN}/failed"
    full = Path(tempfile.mkdtemp(prefix="photostack-drill-full-"))
    settings = json.loads(Path(scheduled.DRILL_SETTINGS).read_text())
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700,uid=postgres,gid=postgres", "tmpfs", str(full)],
                   check=True)
    try:
        (full / "drill.json").write_text(json.dumps({**settings, "scratch": str(full / "scratch")}))
        failed = subprocess.run(["runuser", "-u", "postgres", "--", scheduled.DRILL_SCRIPT, "--config",
                                 str(full / "drill.json"), "--stanza", "shard0"], capture_output=True, text=True,
                                cwd="/", timeout=600)
    finally:
        subprocess.run(["umount", str(full)], check=True)
        full.rmdir()
    assert failed.returncode == 1 and "shard0: FAILED" in failed.stdout and "MB free" in failed.stdout, failed.stdout
    values = munin_values(onebox, PLUGIN)
    assert values["failed"] == "1"
    run_munin_cron()
    assert store.open_alerts()[key]["severity"] == "critical"
    status = json.loads(ops("status", "--json").stdout)
    readings = {f"{r['plugin']}.{r['field']}": r for r in status["readings"]}
    assert readings[f"{PLUGIN}.failed"]["state"] == "critical"
    assert readings[f"{PLUGIN}.failed"]["runbook"] == "restore_drill_failed"
    assert readings["pgbackrest_backup_shard0.age_hours"]["state"] in ("ok", "warning", "critical")

    done = ops("restore-drill", "--shard", "0")

    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout)
    assert "shard0: ok: backup " in done.stdout and "marker " in done.stdout
    values = munin_values(onebox, PLUGIN)
    assert values["failed"] == "0" and float(values["age_hours"]) < 0.1 and float(values["restore_seconds"]) > 0
    run_munin_cron()
    assert key not in store.open_alerts()
    last = bk.last_drill(onebox, 0)
    assert last.ok and last.restore_s > 0 and last.backup.endswith(("F", "D", "I"))
    assert ops("backups").returncode == 0
    # Only the drills' lock files stay (other tests may have drilled other shards): no copy is left.
    leftovers = run_step(host, onebox.ssh, "scratch", f"ls -A {scheduled.DRILL_SCRATCH}").split()
    assert "shard0.lock" in leftovers and all(name.endswith(".lock") for name in leftovers), leftovers
