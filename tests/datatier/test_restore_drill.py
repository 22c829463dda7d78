"""The restore drill (roles/postgres/restore_drill.py, as the hosts run it) against a throwaway
PostgreSQL 15 cluster archiving into a throwaway pgBackRest repository: no one-box, no lock.

A drill restores the latest backup plus the archive, finds the marker it wrote before, records
its result on the primary and leaves nothing behind; a repository that lost its newest WAL, or
that holds no backup, fails the drill and that failure is recorded too. The Munin plugin reads
what was recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

from roles.postgres import restore_drill
from tests.app_services import free_ports

PG_BIN = "/usr/lib/postgresql/15/bin"
DRILL = Path(restore_drill.__file__)
PLUGIN = Path(__file__).resolve().parents[2] / "monitoring" / "agents" / "munin" / "plugins" / "pgbackrest_drill_"
STANZA = "shard7"

pytestmark = pytest.mark.skipif(not (shutil.which("pgbackrest") and Path(PG_BIN).is_dir()),
                                reason="pgbackrest and PostgreSQL 15 are not installed")


def as_postgres(*argv: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, cwd="/",
                          env=env, timeout=600)
    if check and done.returncode:
        raise AssertionError(f"{argv[0]}: {done.stderr.strip() or done.stdout.strip()}")
    return done


class Shard:
    """A primary archiving into its own repository, with one logical shard holding rows."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_ports(1)[0]
        self.data, self.sock, self.repo = root / "data", root / "sock", root / "repo"
        self.conf = root / "pgbackrest.conf"
        for d in (self.sock, self.repo, root / "log", root / "lock"):
            d.mkdir()
        self.conf.write_text(textwrap.dedent(f"""\
            [global]
            repo1-path={self.repo}
            log-path={root / 'log'}
            lock-path={root / 'lock'}
            log-level-console=warn
            start-fast=y
            archive-timeout=20

            [{STANZA}]
            pg1-path={self.data}
            pg1-port={self.port}
            pg1-socket-path={self.sock}
            """))
        shutil.chown(root, "postgres", "postgres")
        for path in root.rglob("*"):
            shutil.chown(path, "postgres", "postgres")
        as_postgres(f"{PG_BIN}/initdb", "-D", str(self.data), "--auth-local=peer", "-U", "postgres", "-E", "UTF8",
                    "--locale=C.UTF-8")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = ''\nunix_socket_directories = '{self.sock}'\n"
                       "archive_mode = on\nshared_buffers = 32MB\n"
                       f"archive_command = 'pgbackrest --config={self.conf} --stanza={STANZA} archive-push %p'\n")
        as_postgres(f"{PG_BIN}/pg_ctl", "-D", str(self.data), "-l", str(root / "pg.log"), "-w", "start")
        self.psql(f"CREATE DATABASE {STANZA}")
        self.psql("CREATE SCHEMA shard_0000; CREATE TABLE shard_0000.photos (id bigint PRIMARY KEY); "
                  "CREATE TABLE shard_0000.likes (id bigint); "
                  "INSERT INTO shard_0000.photos SELECT generate_series(1, 5000)", STANZA)
        self.pgbackrest("stanza-create")

    def psql(self, sql: str, database: str = "postgres") -> str:
        return as_postgres(f"{PG_BIN}/psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", str(self.sock),
                           "-p", str(self.port), "-d", database, "-c", sql).stdout.strip()

    def pgbackrest(self, *args: str) -> str:
        return as_postgres("pgbackrest", f"--config={self.conf}", f"--stanza={STANZA}", *args).stdout

    def settings(self, scratch: Path) -> Path:
        path = self.root / "drill.json"
        path.write_text(json.dumps({"bindir": PG_BIN, "socket_dir": str(self.sock), "scratch": str(scratch),
                                    "pgbackrest_config": str(self.conf), "stanzas": {STANZA: [self.port]},
                                    "start_timeout_s": 120}))
        return path

    def drill(self, path_prefix: str = "") -> subprocess.CompletedProcess:
        env = {"PATH": f"{path_prefix}/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        return as_postgres("/usr/bin/python3", "-I", str(DRILL),
                           "--config", str(self.settings(self.root / "scratch")), env=env, check=False)

    def results(self) -> list[tuple[str, ...]]:
        rows = self.psql(f"SELECT ok, backup IS NOT NULL, restore_s IS NOT NULL, detail FROM {restore_drill.TABLE} "
                         "ORDER BY id")
        return [tuple(row.split("|")) for row in rows.splitlines()]

    def stop(self) -> None:
        as_postgres(f"{PG_BIN}/pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)


@pytest.fixture
def shard():
    root = Path(tempfile.mkdtemp(prefix="photostack-drill-", dir="/tmp"))
    os.chmod(root, 0o755)
    found = Shard(root)
    yield found
    found.stop()
    copy = root / "scratch" / STANZA
    if (copy / "postmaster.pid").exists():  # a copy a failed drill left running
        as_postgres(f"{PG_BIN}/pg_ctl", "-D", str(copy), "-m", "immediate", "-w", "stop", check=False)
    shutil.rmtree(root, ignore_errors=True)


def _leftovers(shard: Shard) -> list[str]:
    scratch = shard.root / "scratch"
    return sorted(p.name for p in scratch.iterdir()) if scratch.exists() else []


def test_drill_fails_without_a_backup_then_restores_the_latest_and_finds_its_marker(shard):
    """Both outcomes recorded on the primary, and read by the Munin plugin as munin-node runs it.
    (One cluster for both: each set-up costs a backup and a drill.)"""
    settings = [f"host={shard.sock}", f"port={shard.port}", f"stanza={STANZA}", f"PYTHONPATH={PLUGIN.parent.parent}"]

    def munin() -> dict[str, str]:
        out = as_postgres("/usr/bin/env", *settings, "/usr/bin/python3", str(PLUGIN),
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}).stdout
        return dict(line.split(".value ") for line in out.splitlines())

    shard.psql(restore_drill.TABLE_SQL)
    # No drill yet: nothing failed, nothing restored; no entry to count the age from.
    assert munin() == {"failed": "0", "age_hours": "U", "restore_seconds": "0.000"}

    failed = shard.drill()  # no backup yet

    assert failed.returncode == 1 and f"no backup of {STANZA}" in failed.stdout
    assert [row[:2] for row in shard.results()] == [("f", "f")]
    first = munin()
    assert first["failed"] == "1" and float(first["restore_seconds"]) == 0 and 0 <= float(first["age_hours"]) < 0.1

    shard.pgbackrest("--type=full", "backup")
    shard.psql("INSERT INTO shard_0000.photos SELECT generate_series(5001, 6000)", STANZA)  # after the backup
    archived_before = sorted(p.name for p in (shard.repo / "archive" / STANZA).rglob("*"))

    done = shard.drill()

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"{STANZA}: ok: backup ") and "marker " in done.stdout and "2 tables" in done.stdout
    row = shard.results()[-1]
    assert row == ("t", "t", "t", row[3]) and row[3].startswith("marker ")
    assert _leftovers(shard) == [f"{STANZA}.lock"]  # the copy's directory is gone
    # The promoted copy archived nothing into the shard's repository (no new timeline's history).
    archived_after = sorted(p.name for p in (shard.repo / "archive" / STANZA).rglob("*"))
    assert not [name for name in archived_after if name.endswith(".history")]
    assert set(archived_before) <= set(archived_after)
    second = munin()
    assert second["failed"] == "0" and float(second["restore_seconds"]) > 0 and float(second["age_hours"]) < 0.1


def test_drill_fails_and_says_so_when_the_archive_lost_its_newest_wal(shard):
    """Fault: the repository loses every WAL segment after the backup's own (a pruned or partly
    replicated bucket). The restore still opens, at the end of the backup, without the marker."""
    shard.psql(restore_drill.TABLE_SQL)  # in the backup: only the marker row is missing from the copy
    shard.pgbackrest("--type=full", "backup")
    stop = json.loads(shard.pgbackrest("--output=json", "info"))[0]["backup"][-1]["archive"]["stop"]
    shim = shard.root / "bin"
    shim.mkdir()
    (shim / "pgbackrest").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        # Fault injection: before a restore, drop archived segments newer than {stop}.
        case " $* " in *" restore "*)
            find {shard.repo}/archive/{STANZA} -type f -name '0000000*' | while read -r f; do
                seg=$(basename "$f" | cut -c1-24)
                [ "$(printf '%s\\n%s\\n' "$seg" {stop} | LC_ALL=C sort | tail -n 1)" = {stop} ] || rm -f "$f"
            done ;;
        esac
        exec /usr/bin/pgbackrest "$@"
        """))
    (shim / "pgbackrest").chmod(0o755)
    shutil.chown(shim, "postgres", "postgres")

    done = shard.drill(path_prefix=f"{shim}:")

    assert done.returncode == 1
    assert f"{STANZA}: FAILED" in done.stdout and "is missing from the restored copy" in done.stdout
    (row,) = shard.results()
    assert row[:2] == ("f", "t") and "is missing from the restored copy" in row[3]
    assert _leftovers(shard) == [f"{STANZA}.lock"]
