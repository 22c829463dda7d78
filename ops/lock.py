"""The deploy lock: one change to the fleet at a time.

A JSON file in the stack's state dir, created exclusively (O_EXCL), holding who took it, where,
when and why. A lock whose process is gone (same machine, pid not alive) is stale and taken over
with a note; any other held lock stops the second deploy with one line naming the holder.
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


class LockHeld(RuntimeError):
    """Another deploy holds the lock."""


@dataclass(frozen=True)
class LockInfo:
    """Who holds the lock."""

    owner: str
    host: str
    pid: int
    since: float
    purpose: str

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"{self.purpose} by {self.owner}@{self.host} (pid {self.pid}) since {when}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(info: LockInfo) -> bool:
    """A lock taken on this machine by a process that no longer runs."""
    return info.host == socket.gethostname() and not _pid_alive(info.pid)


def read_lock(path: Path) -> LockInfo | None:
    """The lock's holder, or None when nobody holds it."""
    try:
        return LockInfo(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None


@contextmanager
def held(path: Path, purpose: str, notes: list[str] | None = None) -> Iterator[LockInfo]:
    """Hold the lock at `path` for the block; LockHeld if someone else holds it."""
    info = LockInfo(os.environ.get("USER", "unknown"), socket.gethostname(), os.getpid(), time.time(), purpose)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            break
        except FileExistsError:
            current = read_lock(path)
            if current is not None and not is_stale(current):
                raise LockHeld(f"deploy lock held: {current.describe()} ({path}; remove it only if that deploy is gone)")
            if notes is not None and current is not None:
                notes.append(f"took over a stale lock: {current.describe()}")
            path.unlink(missing_ok=True)
    else:
        raise LockHeld(f"deploy lock {path} keeps reappearing; another deploy is starting")
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(asdict(info)))
    try:
        yield info
    finally:
        path.unlink(missing_ok=True)
