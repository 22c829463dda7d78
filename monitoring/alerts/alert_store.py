"""Alert state on disk, in the stack's state dir: spool, log and open incidents.

- `alert-spool/`: one JSON file per event, written atomically *before* sending and removed only
  after PagerDuty accepted it, so an event survives crashes and outages (`flush` resends in order).
  Events PagerDuty rejects as invalid (400) move to `alert-spool/rejected/` instead of blocking.
- `alerts.jsonl`: one line per outcome (sent, local, silenced, spooled, rejected); with no routing
  key this is where alerts go, and `ops alerts` reads it.
- `open-alerts.json`: dedup keys with an open trigger, so OK states resolve only what was opened.
A file lock serialises writers (Munin and the health watcher may alert at the same time).

`ops alerts` and `ops status` read the store where the alert hooks keep it: the one-box's is this
machine's state dir; an AWS stack's is on its monitoring host, which `read_script` prints in one
go (reading only) and `AlertSnapshot.parse` turns back into the same three views.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from infra.atomic_file import write_atomic

SPOOL_DIR = "alert-spool"
LOG_FILE = "alerts.jsonl"
OPEN_FILE = "open-alerts.json"
LOCK_FILE = ".alerts.lock"
_sequence = itertools.count()


@dataclass(frozen=True)
class SpooledEvent:
    """An event waiting in the spool; `event` is the Events v2 body without routing_key."""

    path: Path
    event: dict[str, Any]
    queued_at: float


class AlertStore:
    """Spool, log and open-incident records of one stack's alerts under `directory`."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.spool_dir = directory / SPOOL_DIR
        self.rejected_dir = self.spool_dir / "rejected"
        self.log_path = directory / LOG_FILE
        self.open_path = directory / OPEN_FILE

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the stack's alert lock (one writer at a time across processes)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / LOCK_FILE, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # spool
    def spool(self, event: dict[str, Any]) -> SpooledEvent:
        """Write `event` to the spool (atomically, fsynced); names sort in arrival order."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        path = self.spool_dir / f"{time.time_ns():020d}-{os.getpid()}-{next(_sequence):06d}.json"
        write_atomic(path, json.dumps({"queued_at": now, "event": event}))
        return SpooledEvent(path, event, now)

    def spooled(self) -> list[SpooledEvent]:
        """Events still waiting to be sent, oldest first."""
        if not self.spool_dir.is_dir():
            return []
        items = []
        for path in sorted(self.spool_dir.glob("[0-9]*.json")):
            record = json.loads(path.read_text())
            items.append(SpooledEvent(path, record["event"], record["queued_at"]))
        return items

    def delivered(self, item: SpooledEvent) -> None:
        """Forget a spooled event PagerDuty accepted."""
        item.path.unlink(missing_ok=True)

    def reject(self, item: SpooledEvent) -> None:
        """Move an event PagerDuty will never accept out of the queue, keeping it for inspection."""
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        os.replace(item.path, self.rejected_dir / item.path.name)

    # log
    def log(self, status: str, event: dict[str, Any], detail: str = "") -> dict[str, Any]:
        """Append one outcome line to alerts.jsonl and return it."""
        payload = event.get("payload", {})
        record = {
            "at": time.time(),
            "status": status,
            "action": event.get("event_action"),
            "dedup_key": event.get("dedup_key"),
            "severity": payload.get("severity"),
            "summary": payload.get("summary"),
            "runbook": payload.get("custom_details", {}).get("runbook"),
            "detail": detail,
        }
        with open(self.log_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        return record

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Logged outcomes, oldest first (the last `limit` if given)."""
        if not self.log_path.exists():
            return []
        lines = [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]
        return lines[-limit:] if limit else lines

    # open incidents
    def open_alerts(self) -> dict[str, dict[str, Any]]:
        """dedup_key -> {severity, since} of triggers not yet resolved."""
        return json.loads(self.open_path.read_text()) if self.open_path.exists() else {}

    def mark_open(self, key: str, severity: str) -> None:
        records = self.open_alerts()
        since = records.get(key, {}).get("since", time.time())
        records[key] = {"severity": severity, "since": since}
        write_atomic(self.open_path, json.dumps(records, indent=2))

    def mark_resolved(self, key: str) -> bool:
        """Drop `key` from the open set; False if it was not open."""
        records = self.open_alerts()
        if records.pop(key, None) is None:
            return False
        write_atomic(self.open_path, json.dumps(records, indent=2))
        return True


class AlertReader(Protocol):
    """What `ops alerts` and `ops status` read of a stack's alert state."""

    def open_alerts(self) -> dict[str, dict[str, Any]]: ...

    def spooled(self) -> list[SpooledEvent]: ...

    def history(self, limit: int | None = None) -> list[dict[str, Any]]: ...


MARK = "@@photostack-alerts@@"


def read_script(directory: PurePosixPath, history: int | None = None) -> str:
    """A shell script printing the alert state under `directory` (on the host that keeps it)
    between markers: the open incidents, the spooled events and the last `history` log lines
    (None: all; 0: none). It only reads, without taking the writers' lock: they replace files
    atomically and append whole lines. It runs as root (the state is root's), so it first checks
    that nobody else could have put anything there: a root-owned directory, not a link, writable
    by root alone; anything else prints `unsafe` and nothing is read."""
    log = {None: f'cat "$d/{LOG_FILE}"', 0: "true"}.get(history, f'tail -n {history} "$d/{LOG_FILE}"')
    return f"""d={shlex.quote(str(directory))}
[ -e "$d" ] || exit 0
if [ -L "$d" ] || [ "$(stat -c %u "$d")" != 0 ] || [ -n "$(find "$d" -maxdepth 0 -perm /022)" ]; then
  echo '{MARK} unsafe'; exit 0
fi
echo '{MARK} open'; cat "$d/{OPEN_FILE}" 2>/dev/null; echo
echo '{MARK} history'; {log} 2>/dev/null
for f in "$d"/{SPOOL_DIR}/[0-9]*.json; do
  [ -f "$f" ] && [ ! -L "$f" ] && echo "{MARK} spool $f" && cat "$f" 2>/dev/null && echo
done
exit 0
"""


@dataclass(frozen=True)
class AlertSnapshot:
    """A stack's alert state as one read printed it (`read_script`): the AlertStore's read views."""

    opened: dict[str, dict[str, Any]]
    queue: list[SpooledEvent]
    log: list[dict[str, Any]]

    @classmethod
    def parse(cls, output: str) -> AlertSnapshot:
        """The state in `read_script`'s output; ValueError if it refused to read or is not JSON."""
        sections: dict[str, list[str]] = {}
        spool: list[tuple[str, list[str]]] = []
        lines: list[str] = []
        for line in output.splitlines():
            if line.startswith(MARK):
                head = line[len(MARK):].strip()
                kind, _, name = head.partition(" ")
                lines = []
                if kind == "unsafe":
                    raise ValueError("not owned and writable by root alone: not read")
                if kind == "spool":
                    spool.append((name, lines))
                else:
                    sections[kind] = lines
            else:
                lines.append(line)
        try:
            opened = "\n".join(sections.get("open", [])).strip()
            queue = []
            for name, body in spool:
                text = "\n".join(body).strip()
                if text:  # empty: sent (and removed) between listing and reading
                    record = json.loads(text)
                    queue.append(SpooledEvent(Path(name), record["event"], record["queued_at"]))
            log = [json.loads(line) for line in sections.get("history", []) if line.strip()]
            return cls(json.loads(opened) if opened else {}, queue, log)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"unreadable alert state: {exc}") from None

    def open_alerts(self) -> dict[str, dict[str, Any]]:
        """dedup_key -> {severity, since} of triggers not yet resolved."""
        return self.opened

    def spooled(self) -> list[SpooledEvent]:
        """Events still waiting to be sent, oldest first."""
        return self.queue

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Logged outcomes read, oldest first (the last `limit` if given)."""
        return self.log[-limit:] if limit else self.log
