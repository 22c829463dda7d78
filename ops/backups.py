"""Backups and point-in-time recovery of the shards (pgBackRest): the runbook restore.md as code.

    backup:   a full/diff/incr backup of one shard, on the host of its primary
    drill:    the restore drill of one shard now (roles/postgres/restore_drill.py, as scheduled)
    status:   per shard, the repository's last full and diff backup, sizes, and how far WAL is archived
    restore:  a shard's backups + archived WAL up to a time, a restore point or the end of the
              archive, either into a side cluster (to inspect, copy rows back) or in place of the
              shard's primary (its replicas out of service first, rebuilt from it afterwards)

After an in-place restore, as after a failover (ops/failover.py `after_promotion`), the new
timeline's history is archived and a fresh backup taken.

Command text comes from roles/postgres/pgbackrest.py; this module decides where it runs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from infra.host_layout import POSTGRES_DATA
from infra.shardstore import primaries_store
from ops import failover as fo
from ops.remote import StepFailed, check_converged, run_step
from ops.stack import Stack
from roles.postgres import commands, pgbackrest, restore_drill, scheduled

BACKUP_KINDS = ("full", "diff", "incr")
# A side cluster's name: a Debian cluster name that cannot be taken for a shard member.
SIDE_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")
SHARD_NAME = re.compile(r"shard\d+(r\d+)?")
# Side clusters take the first free port from here (the shard clusters sit just above 5432).
SIDE_BASE_PORT = 5600


class RestoreRefused(ValueError):
    """A restore that must not start (bad target, bad name, no confirmation); one line why."""


@dataclass(frozen=True)
class BackupSet:
    """One backup in the repository."""

    label: str
    kind: str
    started: datetime
    stopped: datetime
    size: int  # database size, bytes
    repo_size: int  # stored (compressed) in the repository, bytes


@dataclass(frozen=True)
class ShardBackups:
    """What the repository holds for one shard, and how far its primary has archived."""

    shard: int
    stanza: str
    status: str
    backups: list[BackupSet]
    archived_wal: str | None  # the newest segment in the repository
    archived_at: datetime | None  # when the primary last archived a segment
    archive_failures: int  # failed attempts since the primary's stats were reset

    def last(self, kind: str) -> BackupSet | None:
        found = [b for b in self.backups if b.kind == kind]
        return found[-1] if found else None

    @property
    def newest(self) -> BackupSet | None:
        return self.backups[-1] if self.backups else None


def primary(stack: Stack, shard: int) -> fo.Member:
    """The shard's acting primary and its host (FailoverError for a bad shard)."""
    return fo.members(stack, shard)[0]


def _backup_step(stack: Stack, shard: int, kind: str) -> tuple[fo.Member, str]:
    """The shard's primary and the backup step's name (RestoreRefused for an unknown kind)."""
    if kind not in BACKUP_KINDS:
        raise RestoreRefused(f"--type {kind}: one of {', '.join(BACKUP_KINDS)}")
    member = primary(stack, shard)
    return member, f"{kind} backup of {pgbackrest.stanza(member.cluster)} from {member.cluster.name}"


def backup_steps(stack: Stack, shard: int, kind: str = "diff") -> list[str]:
    """What `backup` would do (`--dry-run`), from the topology and the stored primaries."""
    member, step = _backup_step(stack, shard, kind)
    return [f"{step} on {member.host.name} into the backup repository"]


def backup(stack: Stack, shard: int, kind: str = "diff", progress: Callable[[str], None] = lambda _: None) -> fo.StepLog:
    """Back shard `shard` up from its primary (a diff without a full becomes a full)."""
    member, step = _backup_step(stack, shard, kind)
    log = fo.StepLog()
    log.timed(step,
              lambda: run_step(member.host, stack.ssh, "pgbackrest backup", pgbackrest.backup(member.cluster, kind)),
              progress)
    return log


@dataclass(frozen=True)
class DrillResult:
    """The last finished restore drill of a shard, as recorded on its primary."""

    finished: datetime
    ok: bool
    backup: str
    restore_s: float | None
    detail: str


# The newest finished drill of a stanza: finished epoch | ok | backup | restore_s | detail.
LAST_DRILL_SQL = (f"SELECT extract(epoch FROM finished)::bigint || '|' || ok || '|' || coalesce(backup, '') || '|' || "
                  f"coalesce(restore_s::text, '') || '|' || detail FROM {restore_drill.TABLE} "
                  "WHERE stanza = '{stanza}' AND ok IS NOT NULL ORDER BY id DESC LIMIT 1")


def parse_drill(row: str) -> DrillResult | None:
    """One LAST_DRILL_SQL row (None for none)."""
    if not row.strip():
        return None
    finished, ok, backup, restore_s, detail = row.strip().split("|", 4)
    return DrillResult(_time(finished), ok == "true", backup, float(restore_s) if restore_s else None, detail)


def last_drill(stack: Stack, shard: int) -> DrillResult | None:
    """The shard's last finished restore drill (None: none yet, or the primary did not answer)."""
    member = primary(stack, shard)
    query = LAST_DRILL_SQL.format(stanza=pgbackrest.stanza(member.cluster))
    try:
        return parse_drill(run_step(member.host, stack.ssh, "last restore drill", commands.psql_value(member.cluster, query)))
    except StepFailed:
        return None


def drill_steps(stack: Stack, shard: int) -> list[str]:
    """What `drill` would do (`--dry-run`)."""
    member = primary(stack, shard)
    return [f"restore drill of {pgbackrest.stanza(member.cluster)} on {member.host.name}: the latest backup and "
            f"archived WAL into a throwaway cluster, checked, removed, the result recorded in {member.cluster.name}"]


def drill(stack: Stack, shard: int, progress: Callable[[str], None] = lambda _: None) -> tuple[fo.StepLog, str]:
    """The restore drill of shard `shard` now, on its primary's host, as the schedule runs it:
    latest backup + archive restored into a throwaway cluster, checked, removed, result recorded.
    StepFailed (with the drill's line saying what failed) when it fails."""
    member = primary(stack, shard)
    stanza = pgbackrest.stanza(member.cluster)
    out: list[str] = []
    log = fo.StepLog()
    command = (f"cd / && runuser -u postgres -- {scheduled.DRILL_SCRIPT} --config {scheduled.DRILL_SETTINGS} "
               f"--stanza {stanza}")
    log.timed(f"restore drill of {stanza} on {member.host.name}",
              lambda: out.append(run_step(member.host, stack.ssh, f"restore drill of {stanza}", command)), progress)
    return log, out[0].strip().splitlines()[-1]


def _time(value: str) -> datetime:
    return datetime.fromtimestamp(int(value), UTC)


def parse_info(shard: int, info: list[dict], archiver: str) -> ShardBackups:
    """`pgbackrest info --output=json` of one stanza plus the primary's pg_stat_archiver row
    (`last_archived_time epoch|failed_count`, empty when the primary did not answer)."""
    entry = info[0]
    backups = [
        BackupSet(b["label"], b["type"], _time(b["timestamp"]["start"]), _time(b["timestamp"]["stop"]),
                  int(b["info"]["size"]), int(b["info"]["repository"]["delta"]))
        for b in entry.get("backup", [])
    ]
    maxima = [a["max"] for a in entry.get("archive", []) if a.get("max")]
    archived_at, failures = None, 0
    if archiver.strip():
        epoch, failed = archiver.strip().split("|")
        archived_at = _time(epoch.split(".")[0]) if epoch else None
        failures = int(failed or 0)
    return ShardBackups(shard, entry["name"], entry["status"]["message"], backups,
                        max(maxima) if maxima else None, archived_at, failures)


ARCHIVER_SQL = ("SELECT coalesce(extract(epoch FROM last_archived_time)::bigint::text, '') || '|' || failed_count "
                "FROM pg_stat_archiver")


def shard_status(stack: Stack, shard: int) -> ShardBackups:
    """The repository's backups of one shard, and its primary's archiver (if it answers)."""
    member = primary(stack, shard)
    raw = run_step(member.host, stack.ssh, "pgbackrest info", pgbackrest.info_json(pgbackrest.stanza(member.cluster)))
    try:
        archiver = run_step(member.host, stack.ssh, "pg_stat_archiver", commands.psql_value(member.cluster, ARCHIVER_SQL))
    except StepFailed:
        archiver = ""
    return parse_info(shard, json.loads(raw), archiver)


def status(stack: Stack) -> list[ShardBackups]:
    """Every shard's backups."""
    return [shard_status(stack, shard) for shard in range(stack.config.postgres.physical_shards)]


# --- restore ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """Where recovery stops: a time, a restore point name, or the end of the archive (latest)."""

    kind: str  # "time", "name" or "latest"
    value: str | None = None

    def describe(self) -> str:
        return "the end of the archive" if self.kind == "latest" else f"{self.kind} {self.value}"


def parse_target(to: str | None, latest: bool) -> Target:
    """`--to` (an ISO time, UTC unless it says otherwise, or a restore point name) or `--latest`."""
    if (to is None) == (not latest):
        raise RestoreRefused("give exactly one of --to TIME (or restore point name) and --latest")
    if latest:
        return Target("latest")
    try:
        when = datetime.fromisoformat(to)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,63}", to):
            raise RestoreRefused(f"--to {to!r}: neither an ISO time (2026-11-30 14:02:00) nor a restore point name") from None
        return Target("name", to)
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return Target("time", when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00"))


def archived_until(stack: Stack, member: fo.Member) -> datetime:
    """A time up to which the archive surely holds every commit: `pgbackrest check` on the primary
    switches WAL and waits until that segment is archived, so the time before it starts is safe.

    First one commit of its own: recovery to a time stops at the first commit after it, and
    Postgres refuses to open (recovery ended before the target) when the WAL ends before any
    such commit — on a shard that took no writes since the target."""
    before = datetime.now(UTC)
    run_step(member.host, stack.ssh, "a commit after the target", commands.psql(member.cluster, "SELECT txid_current();"))
    run_step(member.host, stack.ssh, "pgbackrest check (switch and archive WAL)", pgbackrest.check(member.cluster))
    return before


def check_target(stack: Stack, member: fo.Member, target: Target, backups: ShardBackups, log: fo.StepLog) -> None:
    """Archive the primary's current WAL first (any target: a restore point or the latest commit
    may still sit in an unfinished segment), then refuse a time the archive cannot reach
    (pgBackRest would silently restore to its end) or one before every backup."""
    if not backups.backups:
        raise RestoreRefused(f"shard {backups.shard}: no backup in the repository (run `ops backup --shard {backups.shard}`)")
    when = None
    if target.kind == "time":
        when = datetime.strptime(target.value, "%Y-%m-%d %H:%M:%S.%f+00").replace(tzinfo=UTC)
        if when < backups.backups[0].stopped:
            raise RestoreRefused(f"--to {when:%Y-%m-%d %H:%M:%S}Z is before the oldest backup "
                                 f"({backups.backups[0].stopped:%Y-%m-%d %H:%M:%S}Z)")
    try:
        until = archived_until(stack, member)
    except StepFailed as exc:
        if when is not None:
            raise RestoreRefused(f"cannot confirm the archive reaches --to (the primary did not archive: {exc}); "
                                 "use --latest") from exc
        log.warnings.append(f"the primary did not archive its current WAL ({exc}); restoring what the archive holds")
        return
    if when is not None and when > until:
        raise RestoreRefused(f"--to {when:%Y-%m-%d %H:%M:%S}Z is after the last archived WAL "
                             f"(archived up to {until:%Y-%m-%d %H:%M:%S}Z)")


TIMELINE_SQL = "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"


def current_timeline(stack: Stack, member: fo.Member) -> int | None:
    """The acting primary's timeline (None when it does not answer)."""
    try:
        return int(run_step(member.host, stack.ssh, "timeline", commands.psql_value(member.cluster, TIMELINE_SQL)).strip())
    except (StepFailed, ValueError):
        return None


def check_side_name(name: str) -> None:
    """A side cluster's name must be new and not look like a shard member's."""
    if not SIDE_NAME.fullmatch(name) or SHARD_NAME.fullmatch(name):
        raise RestoreRefused(f"--into {name!r}: a new cluster name ([a-z][a-z0-9_]*, not shard<N>[r<K>])")


def side_cluster_script(version: int, name: str, restore: str) -> str:
    """Create cluster `name` on a free port, restore into it, start it and wait until recovery
    reached its target and promoted; prints `port=<P>`. Refuses an existing cluster."""
    data = f"{POSTGRES_DATA}/{version}/{name}"
    ready = f"/usr/lib/postgresql/{version}/bin/psql -X -tA -h /var/run/postgresql -p $port -d postgres -c 'SELECT NOT pg_is_in_recovery()'"
    return "\n".join([
        "set -e",
        f"if [ -e /etc/postgresql/{version}/{name} ] || [ -e {data} ]; then echo 'cluster {name} exists already' >&2; exit 2; fi",
        "used=$(pg_lsclusters -h | awk '{print $3}')",
        f"port={SIDE_BASE_PORT}; while echo \"$used\" | grep -qx $port || pg_isready -q -h /var/run/postgresql -p $port; do port=$((port + 1)); done",
        f"pg_createcluster {version} {name} --port $port --locale C.UTF-8 -- --auth-local=peer --auth-host=scram-sha-256 "
        "> /dev/null 2>&1 || { echo 'pg_createcluster failed' >&2; exit 1; }",
        # Nothing half-done: a failed restore drops the cluster it created.
        f"trap 'pg_dropcluster --stop {version} {name} >/dev/null 2>&1' EXIT",
        # The side cluster never archives into the shard's stanza, and listens on the socket only.
        # No hot standby: it opens once recovery reached its target, and its default settings
        # (max_connections …) need not match the shard's, which a hot standby would require.
        f"printf \"archive_mode = off\\nlisten_addresses = ''\\nhot_standby = off\\n\" >> /etc/postgresql/{version}/{name}/postgresql.conf",
        f"find {data} -mindepth 1 -delete",
        restore.replace("PGDATA", data),
        f"pg_ctlcluster {version} {name} start >/dev/null 2>&1 || true",
        f"for i in $(seq 600); do [ \"$(cd / && runuser -u postgres -- {ready} 2>/dev/null)\" = t ] && break; "
        f"kill -0 \"$(head -n 1 {data}/postmaster.pid 2>/dev/null)\" 2>/dev/null || "
        f"{{ grep -E 'FATAL|PANIC' /var/log/postgresql/postgresql-{version}-{name}.log | tail -n 3 >&2; exit 1; }}; sleep 0.2; done",
        f"[ \"$(cd / && runuser -u postgres -- {ready})\" = t ] || {{ echo 'still recovering after 120 s' >&2; exit 1; }}",
        "trap - EXIT",
        "echo port=$port",
    ])


def confirmed(question: str, yes: bool, ask: Callable[[str], bool] | None) -> None:
    """`--yes`, or an interactive yes; without a terminal to ask on: refused."""
    if yes:
        return
    if ask is None:
        raise RestoreRefused(f"{question}: no terminal to confirm on; pass --yes")
    if not ask(question):
        raise RestoreRefused("not confirmed; nothing was changed")


def restore_steps(stack: Stack, shard: int, target: Target, into: str | None) -> list[str]:
    """What `restore` would do (`--dry-run`), from the topology and the stored primaries: the
    archive is not asked, so whether it reaches the target is the first step's check."""
    member = primary(stack, shard)
    c, host, stanza = member.cluster, member.host.name, pgbackrest.stanza(member.cluster)
    check = f"check the archive reaches {target.describe()} (refused if no backup or the archive cannot reach it)"
    if into is not None:
        check_side_name(into)
        return [check, f"restore {stanza} into a new cluster {into} on {host} (socket only; the shard is untouched)"]
    replicas = [m.cluster.name for m in fo.members(stack, shard)[1:]]
    return [f"ask for confirmation (--yes): writes after {target.describe()} are lost", check,
            f"take {', '.join(replicas) or 'no replica'} out of service (synchronous standby off, pgbouncer repointed, "
            "fenced)", f"stop {c.name} on {host}", f"restore {c.name} (delta) to {target.describe()}",
            f"start {c.name} and wait for its promotion", f"clear {c.name}'s recovery settings",
            f"archive {c.name}'s new timeline", f"fresh backup of shard {shard}",
            f"rebuild {', '.join(replicas) or 'no replica'} from {c.name} and put them back in service"]


def restore(stack: Stack, shard: int, target: Target, into: str | None, yes: bool = False,
            ask: Callable[[str], bool] | None = None, progress: Callable[[str], None] = lambda _: None
            ) -> tuple[fo.StepLog, str]:
    """Restore shard `shard` to `target`: into side cluster `into`, or in place. Returns the step
    log and one line saying where the restored data is."""
    member = primary(stack, shard)
    log = fo.StepLog()
    backups = shard_status(stack, shard)
    if into is not None:
        check_side_name(into)
        log.timed(f"check the archive reaches {target.describe()}", lambda: check_target(stack, member, target, backups, log), progress)
        cmd = pgbackrest.restore(member.cluster, "PGDATA", target.value, target.kind, delta=False,
                                 timeline=current_timeline(stack, member))
        out: list[str] = []
        log.timed(f"restore {pgbackrest.stanza(member.cluster)} into {into}",
                  lambda: out.append(run_step(member.host, stack.ssh, f"restore into {into}",
                                              side_cluster_script(member.cluster.version, into, cmd))), progress)
        port = out[0].strip().rsplit("port=", 1)[-1]
        return log, (f"shard {shard} at {target.describe()} is in cluster {into} on {member.host.name}, "
                     f"port {port} (socket only); drop it with `pg_dropcluster --stop {member.cluster.version} {into}`")
    found = fo.members(stack, shard)
    confirmed(f"replace shard {shard}'s data with its backup at {target.describe()} "
              f"(writes after it are lost; replicas rebuilt)", yes, ask)
    log.timed(f"check the archive reaches {target.describe()}", lambda: check_target(stack, member, target, backups, log), progress)
    store = primaries_store(stack.config, stack.name)

    def replicas_out() -> None:
        primaries = store.load()
        for m in found[1:]:
            if m.cluster.in_service:
                primaries = primaries.out_of_service(shard, m.cluster.replica)
        store.save(primaries)
        check_converged(stack.converge([member.host], {"postgres"}), "dropping the synchronous standby")
        fo.repoint_pgbouncer(stack)
        for m in found[1:]:
            run_step(m.host, stack.ssh, f"fence {m.cluster.name}", commands.fence(m.cluster))

    c = member.cluster
    timeline = current_timeline(stack, member)
    log.timed("replicas out of service", replicas_out, progress)
    log.timed(f"stop {c.name}", lambda: run_step(member.host, stack.ssh, f"stop {c.name}", commands.ctl(c, "stop -m fast")), progress)
    log.timed(f"restore {c.name} (delta)", lambda: run_step(
        member.host, stack.ssh, f"restore {c.name}", pgbackrest.restore(c, c.data_dir, target.value, target.kind, delta=True, timeline=timeline)), progress)
    log.timed(f"start {c.name} and wait for its promotion", lambda: run_step(
        member.host, stack.ssh, f"start {c.name}", f"{commands.ctl(c, 'start')} && {commands.wait_writable(c, 600)}"), progress)
    # pgBackRest wrote the recovery target and its restore_command into postgresql.auto.conf; a
    # replica's base backup would copy them and stop replaying at the target — promoting itself.
    # The roles keep every setting in postgresql.conf, so the file is emptied.
    log.timed(f"clear {c.name}'s recovery settings", lambda: run_step(
        member.host, stack.ssh, "ALTER SYSTEM RESET ALL",
        f"{commands.psql(c, 'ALTER SYSTEM RESET ALL;')} && {commands.ctl(c, 'reload')}"), progress)
    fo.after_promotion(stack, shard, log, progress)
    rebuilt = fo.rebuild_replica(stack, shard, None, progress)
    log.steps += rebuilt.steps
    log.warnings += rebuilt.warnings
    return log, f"shard {shard} restored in place to {target.describe()}; replicas rebuilt from {c.name}"


def age_seconds(backups: ShardBackups, now: float | None = None) -> float | None:
    """Seconds since the newest backup finished (None without any)."""
    newest = backups.newest
    return None if newest is None else (now or time.time()) - newest.stopped.timestamp()
