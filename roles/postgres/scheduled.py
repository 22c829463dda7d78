"""Scheduled jobs of a database host: full and differential backups and the restore drill, at the
times of the stack config `backups` (infra/schedule.py).

Where systemd runs (every AWS and lab host): a oneshot service and a timer per job. Where it does
not (the one-box): BusyBox's crond, reading only photostack's own crontab directory, so the box's
system cron jobs (munin-cron has its own loop there, e2scrub …) stay off. Both run the jobs as
postgres, in UTC; each job acts only for the shards whose primary is on the host.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from infra import schedule
from infra.config import Backups
from infra.host_layout import POSTGRES_DATA
from roles.context import RoleContext
from roles.engine.resources import Absent, DesiredState, Directory, File, Handler, Packages, Service
from roles.postgres import pgbackrest
from roles.postgres.cluster import SOCKET_DIR, Cluster

DRILL_SCRIPT = "/usr/local/sbin/photostack-restore-drill"
DRILL_SETTINGS = "/etc/photostack/restore-drill.json"
DRILL_SCRATCH = f"{POSTGRES_DATA}/restore-drill"  # throwaway restores, one directory per shard
SCHEDULE_LOG = f"{pgbackrest.LOG_PATH}/photostack-schedule.log"
CRON_DIR = "/etc/photostack/cron"
CRONTAB = f"{CRON_DIR}/postgres"  # BusyBox crond: the file's name is the user the jobs run as
CRON_PIDFILE = "/run/photostack-cron.pid"
CRON_LOG = "/var/log/photostack-cron.log"
# An earlier release scheduled backups with Debian's cron on AWS hosts.
OLD_CRON_FILE = "/etc/cron.d/photostack-backups"
RESTART_CRON = "restart photostack crond"
RELOAD_TIMERS = "reload photostack timers"


@dataclass(frozen=True)
class Job:
    """One scheduled job: its unit name, when, what it runs, and what it is."""

    name: str
    schedule: schedule.Schedule
    command: str
    description: str


def jobs(backups: Backups) -> list[Job]:
    """The database host's scheduled jobs."""
    return [
        Job("photostack-backup-full", schedule.parse(backups.full_schedule), f"{pgbackrest.BACKUP_SCRIPT} full",
            "full backup of the shards whose primary is here"),
        Job("photostack-backup-diff", schedule.parse(backups.diff_schedule), f"{pgbackrest.BACKUP_SCRIPT} diff",
            "differential backup of the shards whose primary is here"),
        Job("photostack-restore-drill", schedule.parse(backups.drill_schedule),
            f"{DRILL_SCRIPT} --config {DRILL_SETTINGS}", "restore drill of the shards whose primary is here"),
    ]


def drill_program() -> str:
    """The restore drill as installed: roles/postgres/restore_drill.py, run by the system Python
    in isolated mode (no module from the working directory or PYTHON* variables)."""
    source = (Path(__file__).parent / "restore_drill.py").read_text()
    return ("#!/usr/bin/python3 -I\n# Managed by photostack (roles/postgres/restore_drill.py); "
            "local changes are overwritten by the next converge.\n" + source)


def drill_settings(ctx: RoleContext, clusters: list[Cluster]) -> str:
    """The drill's settings: where Postgres's programs are, and the shards with a member here."""
    stanzas: dict[str, list[int]] = {}
    for cluster in sorted(clusters, key=lambda c: (c.shard, c.replica)):
        stanzas.setdefault(pgbackrest.stanza(cluster), []).append(cluster.port)
    return json.dumps({
        "_comment": "Managed by photostack (roles/postgres/scheduled.py); settings of photostack-restore-drill.",
        "bindir": f"/usr/lib/postgresql/{ctx.config.postgres.version}/bin", "socket_dir": SOCKET_DIR,
        "scratch": DRILL_SCRATCH, "pgbackrest_config": pgbackrest.CONFIG, "stanzas": stanzas,
    }, indent=2) + "\n"


def scheduled(ctx: RoleContext, clusters: list[Cluster], psql: str) -> DesiredState:
    """The backup script, the drill, and their schedule (timers or crontab) on a database host."""
    script = ctx.template("postgres", "photostack-backup.j2", clusters=clusters, socket_dir=SOCKET_DIR, psql=psql)
    state = DesiredState(resources=[
        File(pgbackrest.BACKUP_SCRIPT, script, mode=0o755),
        File(DRILL_SCRIPT, drill_program(), mode=0o755),
        Directory("/etc/photostack"),
        File(DRILL_SETTINGS, drill_settings(ctx, clusters), group="postgres", mode=0o640),
        Directory(DRILL_SCRATCH, owner="postgres", group="postgres", mode=0o700),
    ])
    state.extend(timers(ctx) if ctx.target.systemd_hosts() else crontab(ctx))
    return state


def timers(ctx: RoleContext) -> DesiredState:
    """A oneshot service and its timer per job; a changed unit reloads systemd and the timers."""
    found = jobs(ctx.config.backups)
    resources: list = [Absent(OLD_CRON_FILE)]
    for job in found:
        for kind in ("service", "timer"):
            resources.append(File(f"/etc/systemd/system/{job.name}.{kind}",
                                  ctx.template("postgres", f"job.{kind}.j2", job=job), notify=(RELOAD_TIMERS,)))
    for job in found:
        unit = shlex.quote(f"{job.name}.timer")
        resources.append(Service(
            f"timer {job.name}",
            start=f"systemctl daemon-reload && systemctl enable --now {unit}",
            status=f"systemctl is-enabled --quiet {unit} && systemctl is-active --quiet {unit}",
            stop=f"systemctl disable --now {unit}",
        ))
    units = " ".join(shlex.quote(f"{job.name}.timer") for job in found)
    return DesiredState(resources=resources,
                        handlers=[Handler(RELOAD_TIMERS, f"systemctl daemon-reload && systemctl restart {units}")])


def crontab(ctx: RoleContext) -> DesiredState:
    """BusyBox crond on its own crontab directory, restarted when the crontab changes (it reads
    the directory at start)."""
    content = ctx.template("postgres", "photostack.crontab.j2", jobs=jobs(ctx.config.backups), log=SCHEDULE_LOG)
    daemon = "exec env TZ=UTC PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/busybox crond -f -c " + CRON_DIR
    crond = Service(
        "photostack crond",
        start=(f"start-stop-daemon --start --background --make-pidfile --pidfile {CRON_PIDFILE} --exec /bin/sh -- "
               f"-c {shlex.quote(f'{daemon} -L {CRON_LOG}')}"),
        status=f"start-stop-daemon --status --pidfile {CRON_PIDFILE}",
        stop=f"start-stop-daemon --stop --retry 5 --remove-pidfile --pidfile {CRON_PIDFILE}",
    )
    return DesiredState(
        resources=[
            # BusyBox's crond applet is in the static build only (Debian's busybox leaves it out).
            Packages(("busybox-static",)),
            Directory(CRON_DIR),
            File(CRONTAB, content, mode=0o600, notify=(RESTART_CRON,)),
            crond,
        ],
        handlers=[Handler(RESTART_CRON, crond.restart)],
    )
