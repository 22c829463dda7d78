"""photostack-restore-drill: restore each shard's latest backup into a throwaway cluster and check
it — an integrity check is not a restore test. Installed by the postgres role on every database
host as /usr/local/sbin/photostack-restore-drill (Python's standard library only), run as postgres
by the schedule (`backups.drillSchedule`) and by `ops restore-drill`.

For each shard whose primary runs on this host (other shards are skipped):
  1. a marker row on the primary (table `photostack_restore_drill` in its `postgres` database,
     which also keeps every drill's result), then `pgbackrest check`: the marker's commit is in
     the WAL archive;
  2. `pgbackrest restore` of the latest backup plus the archived WAL to its end, into a scratch
     directory, and a start on a private socket (no TCP, archive_mode off: it never writes into
     the shard's repository) that waits until recovery is done and the copy is promoted;
  3. checks: pg_controldata says "in production", the copy answers a query, the marker row is
     there, the shard database has as many tables in its logical-shard schemas as the primary;
  4. the copy stopped and its directory removed (also after a failure), then the result — ok or
     what failed, the backup used, the restore time — written to the primary's table.
Munin (`pgbackrest_drill_<stanza>`) and `ops backups` read that table from any member.
Exit status: 0 every drill here passed (or none to run), 1 one failed, 2 bad use or a drill of
the same shard already running.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TABLE = "photostack_restore_drill"
# The results table, in each primary's `postgres` database (replicas get it by streaming).
TABLE_SQL = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    stanza text NOT NULL,
    started timestamptz NOT NULL DEFAULT now(),
    finished timestamptz,
    ok boolean,
    backup text,
    restore_s real,
    detail text NOT NULL DEFAULT ''
)"""
# Results kept per shard.
KEEP = 200
# Tables of the logical-shard schemas (`shard_0000` …) of a shard's database.
TABLES_SQL = ("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
              "WHERE c.relkind IN ('r', 'p') AND n.nspname LIKE 'shard\\_%'")
TIMELINE_SQL = "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
# The copy's port: private socket directory, so any number is free.
DRILL_PORT = 5432
# Free space the scratch directory needs, as a multiple of the backup's database size.
SPACE_FACTOR = 1.2


class DrillFailed(Exception):
    """A step of the drill failed; the message says which and why (one line)."""


@dataclass(frozen=True)
class Settings:
    """The drill's settings file (written by the postgres role; JSON)."""

    bindir: str  # PostgreSQL's programs (pg_ctl, psql, pg_controldata)
    socket_dir: str  # where the shard clusters listen
    scratch: str  # throwaway restores go under it, one directory per shard
    pgbackrest_config: str
    stanzas: dict[str, list[int]]  # stanza (= database) → ports of its members on this host
    start_timeout_s: int = 3600

    @classmethod
    def load(cls, path: str) -> Settings:
        data = json.loads(Path(path).read_text())
        return cls(**{k: v for k, v in data.items() if k != "_comment"})


def run(argv: list[str], what: str, timeout: float = 3600, **kwargs) -> str:
    """`argv`'s stdout; DrillFailed naming the step (`what`) and the program's last error line."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/", **kwargs)
    except subprocess.TimeoutExpired:
        raise DrillFailed(f"{what} took longer than {timeout:.0f} s") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        # psql follows its ERROR line with the statement and a caret: the ERROR line says why.
        errors = [line for line in lines if "ERROR" in line or "FATAL" in line] or lines
        raise DrillFailed(f"{what} failed: {errors[-1] if errors else f'exit {done.returncode}'}")
    return done.stdout


class Drill:
    """One shard's drill."""

    def __init__(self, settings: Settings, stanza: str, port: int) -> None:
        self.s, self.stanza, self.port = settings, stanza, port
        self.scratch = Path(settings.scratch) / stanza

    def psql(self, sql: str, database: str = "postgres", socket: str | None = None, port: int | None = None) -> str:
        # The drill's own rows need no synchronous standby: with none connected, a commit
        # would wait for one and the drill would hang instead of reporting.
        env = {**os.environ, "PGOPTIONS": "-c synchronous_commit=local"}
        where = "the restored copy" if socket else "the primary"
        return run([f"{self.s.bindir}/psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", socket or self.s.socket_dir,
                    "-p", str(port or self.port), "-d", database, "-c", sql], f"a query on {where}", timeout=120,
                   env=env).strip()

    def pgbackrest(self, *args: str, timeout: float = 3600) -> str:
        return run(["pgbackrest", f"--config={self.s.pgbackrest_config}", f"--stanza={self.stanza}", *args],
                   f"pgbackrest {args[-1]}", timeout=timeout)

    def mark(self) -> tuple[int, int]:
        """The marker row (its id) and the primary's count of logical-shard tables."""
        marker = int(self.psql(f"{TABLE_SQL}; INSERT INTO {TABLE} (stanza, detail) VALUES "
                               f"('{self.stanza}', 'running') RETURNING id"))
        return marker, int(self.psql(TABLES_SQL, self.stanza))

    def latest_backup(self) -> dict:
        info = json.loads(self.pgbackrest("--output=json", "info", timeout=120))
        backups = info[0].get("backup", []) if info else []
        if not backups:
            raise DrillFailed(f"no backup of {self.stanza} in the repository")
        return backups[-1]

    def restore(self, backup: dict) -> None:
        """The latest backup plus the archive to its end, on the primary's timeline, into scratch."""
        shutil.rmtree(self.scratch, ignore_errors=True)  # what an interrupted drill left
        self.scratch.mkdir(mode=0o700, parents=True)
        free = shutil.disk_usage(self.scratch).free
        need = int(backup["info"]["size"] * SPACE_FACTOR)
        if free < need:
            raise DrillFailed(f"{self.scratch}: {free / 1e6:.0f} MB free, the restore needs {need / 1e6:.0f} MB")
        timeline = self.psql(TIMELINE_SQL)
        self.pgbackrest(f"--pg1-path={self.scratch}", f"--target-timeline={timeline}", "restore")
        # The shard's settings live outside its data directory (Debian): the copy gets its own.
        (self.scratch / "postgresql.conf").write_text("\n".join([
            f"port = {DRILL_PORT}", "listen_addresses = ''", f"unix_socket_directories = '{self.scratch}'",
            # Never into the shard's repository; open only once recovery is done and promoted (a hot
            # standby would need the shard's max_connections and friends).
            "archive_mode = off", "hot_standby = off", "shared_buffers = 32MB", "max_connections = 20",
            "logging_collector = off", ""]))
        (self.scratch / "pg_hba.conf").write_text("local all postgres peer\n")
        (self.scratch / "pg_ident.conf").write_text("")
        # pg_ctl -w returns once recovery starts (without hot standby that counts as started);
        # the copy answers only after replaying the archive to its end and promoting.
        run([f"{self.s.bindir}/pg_ctl", "-D", str(self.scratch), "-l", str(self.scratch / "drill.log"),
             "-w", "-t", str(self.s.start_timeout_s), "start"], "pg_ctl start", timeout=self.s.start_timeout_s + 30)
        deadline = time.monotonic() + self.s.start_timeout_s
        while not self.promoted():
            if time.monotonic() > deadline:
                raise DrillFailed(f"the restored copy still recovers after {self.s.start_timeout_s} s")
            time.sleep(0.5)

    def promoted(self) -> bool:
        """The copy answers as a primary; DrillFailed (its last FATAL/PANIC line) if it died."""
        alive = subprocess.run([f"{self.s.bindir}/pg_ctl", "-D", str(self.scratch), "status"], capture_output=True,
                               cwd="/").returncode == 0
        if not alive:
            log = (self.scratch / "drill.log").read_text(errors="replace").splitlines()
            fatal = [line for line in log if "FATAL" in line or "PANIC" in line]
            raise DrillFailed(f"the restored copy stopped: {(fatal or log or ['no log'])[-1].strip()}")
        try:
            return self.psql("SELECT NOT pg_is_in_recovery()", socket=str(self.scratch), port=DRILL_PORT) == "t"
        except DrillFailed:
            return False

    def check(self, marker: int, tables: int) -> str:
        state = [line.split(":", 1)[1].strip() for line in
                 run([f"{self.s.bindir}/pg_controldata", str(self.scratch)], "pg_controldata", timeout=60).splitlines()
                 if line.startswith("Database cluster state:")]
        if state != ["in production"]:
            raise DrillFailed(f"pg_controldata: cluster state {state[0] if state else 'missing'}, not in production")
        sock = {"socket": str(self.scratch), "port": DRILL_PORT}
        # No table at all: the copy ends before the drill first created it, so no marker either.
        found = (self.psql(f"SELECT count(*) FROM {TABLE} WHERE id = {marker}", **sock)
                 if self.psql(f"SELECT to_regclass('{TABLE}') IS NOT NULL", **sock) == "t" else "0")
        if found != "1":
            raise DrillFailed(f"marker row {marker} is missing from the restored copy (WAL not replayed to the end)")
        restored = int(self.psql(TABLES_SQL, self.stanza, **sock))
        if restored != tables:
            raise DrillFailed(f"{restored} tables in the restored {self.stanza}, the primary has {tables}")
        return f"marker {marker} found, {tables} tables"

    def clean(self) -> None:
        if (self.scratch / "postmaster.pid").exists():
            subprocess.run([f"{self.s.bindir}/pg_ctl", "-D", str(self.scratch), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=120, cwd="/")
        shutil.rmtree(self.scratch, ignore_errors=True)

    def record(self, marker: int, ok: bool, backup: str | None, restore_s: float | None, detail: str) -> None:
        def literal(value: str | None) -> str:
            return "NULL" if value is None else "'" + value.replace("'", "''") + "'"

        self.psql(f"UPDATE {TABLE} SET finished = now(), ok = {str(ok).lower()}, backup = {literal(backup)}, "
                  f"restore_s = {'NULL' if restore_s is None else f'{restore_s:.1f}'}, detail = {literal(detail[:500])} "
                  f"WHERE id = {marker}; DELETE FROM {TABLE} WHERE stanza = '{self.stanza}' AND id <= "
                  f"(SELECT id FROM {TABLE} WHERE stanza = '{self.stanza}' ORDER BY id DESC OFFSET {KEEP} LIMIT 1)")

    def __call__(self) -> tuple[bool, str]:
        """(passed, one line) — recorded on the primary unless the marker could not be written."""
        try:
            marker, tables = self.mark()
        except DrillFailed as exc:
            return False, f"{self.stanza}: FAILED before the restore: {exc}"
        label, restore_s = None, None
        try:
            self.pgbackrest("check", timeout=600)  # WAL switched and archived: the marker is in the archive
            backup = self.latest_backup()
            label = backup["label"]
            started = time.monotonic()
            self.restore(backup)
            restore_s = time.monotonic() - started
            detail = self.check(marker, tables)
            ok = True
        except DrillFailed as exc:
            ok, detail = False, str(exc)
        finally:
            self.clean()
        try:
            self.record(marker, ok, label, restore_s, detail)
        except DrillFailed as exc:  # the primary went away meanwhile: monitoring will not see this one
            ok, detail = False, f"{detail}; result not recorded: {exc}"
        took = f" restored in {restore_s:.1f} s" if restore_s is not None else ""
        return ok, f"{self.stanza}: {'ok' if ok else 'FAILED'}: backup {label or '-'}{took}; {detail}"


def primary_port(settings: Settings, stanza: str) -> int | None:
    """The port of this host's member of `stanza` that is the primary now (None: not here)."""
    for port in settings.stanzas[stanza]:
        try:
            answer = run([f"{settings.bindir}/psql", "-X", "-tA", "-h", settings.socket_dir, "-p", str(port),
                          "-d", "postgres", "-c", "SELECT NOT pg_is_in_recovery()"], "psql", timeout=30).strip()
        except DrillFailed:
            continue
        if answer == "t":
            return port
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="photostack-restore-drill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="/etc/photostack/restore-drill.json", help="settings file (JSON)")
    parser.add_argument("--stanza", help="only this shard (default: every shard whose primary is here)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(args.config)
    except (OSError, ValueError, TypeError) as exc:
        print(f"photostack-restore-drill: {args.config}: {exc}", file=sys.stderr)
        return 2
    if args.stanza and args.stanza not in settings.stanzas:
        print(f"photostack-restore-drill: no member of {args.stanza} on this host", file=sys.stderr)
        return 2
    status = 0
    for stanza in [args.stanza] if args.stanza else sorted(settings.stanzas):
        port = primary_port(settings, stanza)
        if port is None:
            print(f"{stanza}: skipped: its primary is not on this host", flush=True)
            continue
        Path(settings.scratch).mkdir(mode=0o700, exist_ok=True)
        with open(Path(settings.scratch) / f"{stanza}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"photostack-restore-drill: a drill of {stanza} is running already", file=sys.stderr)
                status = max(status, 2)
                continue
            ok, line = Drill(settings, stanza, port)()
        print(line, flush=True)
        status = max(status, 0 if ok else 1)
    return status


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
