"""Two throwaway PostgreSQL 15 clusters (a source and a target physical shard, wal_level=logical)
on loopback ports, and a move of one logical shard between them by the very SQL of
ops/reshard_sql.py in the order ops/reshard.py runs it. For tests and bench/reshard.py; no
one-box, no lock. What the one-box adds (SSH, the map written to every host) the drill covers.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from app.migrate import load_migrations
from ops import reshard_sql as sql
from roles.postgres.cluster import PASSFILE, SOCKET_DIR, Cluster

PG_BIN = Path("/usr/lib/postgresql/15/bin")
EPOCH_MS = 1314220021721
APP_PASSWORD = "app-pw-throwaway"
REPLICATION_PASSWORD = "repl-pw-throwaway"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgPair:
    """A source (physical shard 0) and a target (physical shard 2) cluster."""

    root: Path
    source: Cluster
    target: Cluster

    @property
    def passfile(self) -> str:
        return str(self.root / "pgpass")

    def psql(self, cluster: Cluster, text: str, value: bool = False, database: str | None = None) -> str:
        args = [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *(["-tA"] if value else []),
                "-h", str(self.root / "sock"), "-p", str(cluster.port), "-d", database or cluster.database, "-f", "-"]
        done = subprocess.run(["runuser", "-u", "postgres", "--", *args], input=text, capture_output=True,
                              text=True, cwd="/")
        if done.returncode:
            raise RuntimeError(f"{cluster.name}: {done.stderr.strip()}")
        return done.stdout.strip()

    def value(self, cluster: Cluster, query: str) -> str:
        return self.psql(cluster, query, value=True)

    def dsn(self, cluster: Cluster) -> str:
        return (f"host=127.0.0.1 port={cluster.port} dbname={cluster.database} user=photostack "
                f"password={APP_PASSWORD}")

    def create_logical(self, logical: int) -> None:
        """A logical shard on the source, migrated as the app does."""
        body = "".join(m.render(logical, EPOCH_MS) for m in load_migrations())
        self.psql(self.source, f"SET ROLE photostack;\n{body}")

    def dump(self, logical: int) -> str:
        script = sql.dump_schema(self.source, logical).replace(SOCKET_DIR, str(self.root / "sock"))
        done = subprocess.run(script, shell=True, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"pg_dump of logical shard {logical}: {done.stderr.strip()}")
        return done.stdout

    def copy(self, logical: int, timeout_s: float = 3600) -> None:
        """Schema, publication, subscription, initial copy done (ops/reshard.py `_copy`)."""
        self.psql(self.target, self.dump(logical))
        self.psql(self.source, sql.publish_sql(logical))
        self.psql(self.target, sql.subscribe_sql(self.source, logical).replace(PASSFILE, self.passfile))
        deadline = time.monotonic() + timeout_s
        while self.value(self.target, sql.copied(logical)) != "t":
            if time.monotonic() > deadline:
                raise TimeoutError(f"logical shard {logical}: initial copy not done")
            time.sleep(0.1)

    def cut_over(self, logical: int, timeout_s: float = 30, trace: bool = False) -> int:
        """Freeze → caught up (rows and checksums equal) → sequence advanced; the source's last id
        value. (ops/reshard.py `_cut_over` then flips and writes the map.)"""
        marks = [time.monotonic()]
        self.psql(self.source, sql.freeze_sql(logical))
        marks.append(time.monotonic())
        names = self.value(self.source, sql.tables(logical)).split(",")
        with ThreadPoolExecutor(max_workers=1) as pool:  # as ops/reshard.py `_caught_up`
            source = pool.submit(self.value, self.source, sql.checksums(logical, names))
            seen = self.value(self.target, sql.checksums(logical, names))
            want = source.result()
        marks.append(time.monotonic())
        deadline = time.monotonic() + timeout_s
        polls = 1
        while seen != want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"logical shard {logical}: target differs from the frozen source")
            polls += 1
            time.sleep(0.02)
            seen = self.value(self.target, sql.checksums(logical, names))
        marks.append(time.monotonic())
        last = int(self.value(self.source, sql.last_id_sql(logical)))
        self.psql(self.target, sql.advance_sequence_sql(logical, last))
        marks.append(time.monotonic())
        if trace:
            steps = ("freeze", "checksums on both sides", f"more polls until equal ({polls})", "sequence")
            print(f"  cut-over {logical}: " + ", ".join(f"{name} {b - a:.2f}s" for name, a, b in
                                                         zip(steps, marks, marks[1:])))
        return last

    def clean(self, logical: int) -> None:
        """After the flip (ops/reshard.py `_clean`)."""
        self.psql(self.target, sql.unsubscribe_sql(logical))
        self.psql(self.target, sql.moved_in_sql(logical))
        self.psql(self.source, sql.unpublish_sql(logical, drop_schema=True))

    def abandon(self, logical: int) -> None:
        """A rollback before the flip (ops/reshard.py `rollback`)."""
        self.psql(self.source, sql.thaw_sql(logical))
        self.psql(self.target, sql.unsubscribe_sql(logical))
        self.psql(self.target, sql.drop_copy_sql(logical))
        self.psql(self.source, sql.unpublish_sql(logical, drop_schema=False))
        self.psql(self.source, sql.drop_slot_sql(logical))

    def stop(self) -> None:
        for name in ("source", "target"):
            subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.root / name),
                            "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def start_pair(settings: dict[str, str] | None = None) -> PgPair:
    """Initialise and start both clusters with the one-box's logins and databases."""
    root = Path(tempfile.mkdtemp(prefix="pgpair-"))
    root.chmod(0o755)
    (root / "sock").mkdir()
    shutil.chown(root / "sock", "postgres")
    pair = PgPair(root, Cluster(15, 0, 0, "127.0.0.1", _free_port()), Cluster(15, 2, 0, "127.0.0.1", _free_port()))
    (root / "pgpass").write_text(f"*:*:*:replicator:{REPLICATION_PASSWORD}\n")
    shutil.chown(root / "pgpass", "postgres")
    (root / "pgpass").chmod(0o600)
    options = {"wal_level": "logical", "listen_addresses": "127.0.0.1", "unix_socket_directories": str(root / "sock"),
               "fsync": "off", **(settings or {})}
    for name, cluster in (("source", pair.source), ("target", pair.target)):
        data = root / name
        data.mkdir()
        shutil.chown(data, "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*as_pg, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
                       check=True, capture_output=True)
        opts = " ".join(f"-c {k}={v}" for k, v in options.items())
        subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", f"-p {cluster.port} {opts}",
                        "-l", str(data / "log"), "-w", "start"], check=True, capture_output=True)
        pair.psql(cluster, f"CREATE ROLE photostack LOGIN PASSWORD '{APP_PASSWORD}';\n"
                           f"CREATE ROLE replicator LOGIN REPLICATION PASSWORD '{REPLICATION_PASSWORD}';\n"
                           f"CREATE DATABASE {cluster.database} OWNER photostack;\n", database="postgres")
    return pair
