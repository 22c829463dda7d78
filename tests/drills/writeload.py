"""Write load against one shard through pgbouncer, for the failover drill and bench/failover.py.

Each write is one autocommit INSERT of a sequence number; a number counts as acknowledged only
once its COMMIT returned. After the failover every acknowledged number must be on the new
primary. Bounded: at most `max_writes` rows and `max_seconds` of running.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psycopg

from ops.stack import Stack

TABLE = "drill.writes"


@dataclass
class WriteLoad:
    """A writer thread; `acked` holds (number, monotonic time of its acknowledgement)."""

    stack: Stack
    shard: int
    max_writes: int = 200_000
    max_seconds: float = 90.0
    acked: list[tuple[int, float]] = field(default_factory=list)
    sent: dict[int, float] = field(default_factory=dict)  # number → monotonic time its INSERT was sent
    errors: int = 0
    first_error_at: float | None = None  # monotonic time of the first failed write

    def connect(self) -> psycopg.Connection:
        box = self.stack.config.onebox
        return psycopg.connect(host=box.address, port=box.pgbouncer_port, dbname=f"shard{self.shard}",
                               user="photostack", password=self.stack.secret("dbPassword"),
                               autocommit=True, connect_timeout=2, prepare_threshold=None)

    def prepare(self) -> None:
        with self.connect() as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS drill")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (run text, n bigint, PRIMARY KEY (run, n))")

    def start(self, run: str) -> None:
        self.run = run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        conn = None
        n = 0
        while not self._stop.is_set() and n < self.max_writes and time.monotonic() < deadline:
            try:
                if conn is None:
                    conn = self.connect()
                self.sent[n] = time.monotonic()
                conn.execute(f"INSERT INTO {TABLE} VALUES (%s, %s)", (self.run, n))
                self.acked.append((n, time.monotonic()))
                n += 1
            except psycopg.Error:
                self.errors += 1
                if self.first_error_at is None:
                    self.first_error_at = time.monotonic()
                n += 1  # an unacknowledged number may or may not have committed; never reuse it
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def outage_after(self, moment: float) -> float:
        """Seconds from `moment` (the kill) to the first write acknowledged after writes began to
        fail (commits in flight at the kill may still be acknowledged just after it)."""
        failed = self.first_error_at or moment
        after = [t for _, t in self.acked if t > failed]
        return (after[0] - moment) if after else float("inf")

    def acked_since(self, moment: float) -> int:
        return sum(1 for _, t in self.acked if t > moment)

    def lost(self, patience_s: float = 20.0) -> list[int]:
        """Acknowledged numbers missing from the shard now (retrying while pgbouncer reconnects)."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                with self.connect() as conn:
                    rows = conn.execute(f"SELECT n FROM {TABLE} WHERE run = %s", (self.run,)).fetchall()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        present = {row[0] for row in rows}
        return [n for n, _ in self.acked if n not in present]
