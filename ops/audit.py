"""The audit trail: every `ops` command that changes a stack, who ran it, when, and how it ended.

One JSON record per command, where every operator reads the same trail (`ops audit`):
- one-box: lines appended to `audit.log` in the stack's state dir;
- AWS: events in the CloudWatch Logs group `/photostack/<stack>/ops-audit`, one stream per
  operator and machine (created on first use), readable by anyone with the stack's read role.
Recording never hides the command's own outcome: a trail that cannot be written is a warning.
The monitoring host copies the recent entries beside the wallboard's page markers (`publish`,
monitoring/wallboard_markers.py AUDIT_FILE), where the wallboard lists them.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.alerts import audit_log_group

if TYPE_CHECKING:
    from infra.targets import Target
    from ops.stack import Stack

AUDIT_FILE = "audit.log"


@dataclass(frozen=True)
class Entry:
    """One changing command."""

    at: float
    who: str
    host: str
    command: str
    outcome: str
    """ok, failed: <one line>, refused: <one line>."""

    def line(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.at))
        return f"{when}  {self.who}@{self.host}  {self.command}  → {self.outcome}"


log_group = audit_log_group  # the CloudWatch Logs group of an AWS stack's trail


class FileTrail:
    """The one-box's trail: JSON lines, appended (O_APPEND writes of one line do not interleave)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / AUDIT_FILE

    def write(self, entry: Entry) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(entry)) + "\n")

    def read(self, limit: int) -> list[Entry]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [Entry(**json.loads(line)) for line in lines[-limit:]]


class LogsTrail:
    """An AWS stack's trail in CloudWatch Logs."""

    def __init__(self, logs: Any, stack: str) -> None:
        self.logs, self.group = logs, log_group(stack)

    def _ensure(self, stream: str) -> None:
        for create, kwargs in ((self.logs.create_log_group, {}), (self.logs.create_log_stream, {"logStreamName": stream})):
            try:
                create(logGroupName=self.group, **kwargs)
            except self.logs.exceptions.ResourceAlreadyExistsException:
                pass

    def write(self, entry: Entry) -> None:
        stream = f"{entry.who}@{entry.host}"
        self._ensure(stream)
        self.logs.put_log_events(logGroupName=self.group, logStreamName=stream,
                                 logEvents=[{"timestamp": int(entry.at * 1000), "message": json.dumps(asdict(entry))}])

    def read(self, limit: int) -> list[Entry]:
        try:
            pages = self.logs.get_paginator("filter_log_events").paginate(logGroupName=self.group)
            events = [e for page in pages for e in page["events"]]
        except self.logs.exceptions.ResourceNotFoundException:
            return []
        events.sort(key=lambda e: e["timestamp"])
        return [Entry(**json.loads(e["message"])) for e in events[-limit:]]


def trail(stack: Stack) -> FileTrail | LogsTrail:
    """Where the stack's audit trail lives."""
    return trail_of(stack.name, stack.target)


def trail_of(name: str, target: Target) -> FileTrail | LogsTrail:
    """Where the audit trail of stack `name` lives on `target`."""
    return target.shared(name, FileTrail, lambda client: LogsTrail(client("logs"), name))


PUBLISHED = 50  # entries the wallboard lists
PUBLISH_EVERY_S = 30.0


def publish(found: FileTrail | LogsTrail, path: Path, limit: int = PUBLISHED) -> int:
    """Write the trail's last `limit` entries, newest first, as the JSON list the wallboard shows
    (nginx serves `path`): replaced whole, readable by all. Returns how many."""
    entries = [asdict(entry) for entry in reversed(found.read(limit))]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entries))
    tmp.chmod(0o644)
    os.replace(tmp, path)
    return len(entries)


def main(argv: list[str] | None = None) -> int:
    """The monitoring host's publisher (roles/munin_master): `python -m ops.audit --stack NAME
    --publish PATH`, every PUBLISH_EVERY_S seconds (`--once`: one copy). The one-box reads its
    state dir's trail; an AWS host reads CloudWatch Logs with its instance profile."""
    import argparse
    import sys

    from infra.config import load_stack_config
    from infra.targets import target_of

    parser = argparse.ArgumentParser(prog="python -m ops.audit", description=main.__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--publish", type=Path, required=True, metavar="PATH")
    parser.add_argument("--once", action="store_true")
    args = parser.parse_args(argv)
    found = trail_of(args.stack, target_of(load_stack_config(args.stack)))
    while True:
        try:
            publish(found, args.publish)
        except Exception as exc:  # noqa: BLE001 — a round that cannot read or write: said, tried again
            print(f"audit publish: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            if args.once:
                return 1
        if args.once:
            return 0
        time.sleep(PUBLISH_EVERY_S)


if __name__ == "__main__":
    raise SystemExit(main())


@contextmanager
def recorded(stack: Stack, command: str, warnings: list[str] | None = None) -> Iterator[None]:
    """Record `command` and its outcome when the block ends (ok, or the error's first line)."""
    outcome = "ok"
    try:
        yield
    except BaseException as exc:
        kind = "refused" if type(exc).__name__ in ("LockHeld", "RestoreRefused", "ReshardError", "FailoverError") else "failed"
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        outcome = f"{kind}: {detail}"
        raise
    finally:
        entry = Entry(time.time(), os.environ.get("USER", "unknown"), socket.gethostname(), command, outcome)
        try:
            trail(stack).write(entry)
        except Exception as exc:  # noqa: BLE001 — the command's own outcome matters more
            if warnings is not None:
                warnings.append(f"audit trail not written ({type(exc).__name__}: {exc})")
