"""The deploy lock: one change to the stack at a time, shared by everyone who operates it.

Deploy, rollback, failover, rebuild-replica, redis-failover, replace-node, converge and secret
rotation take it. The lock is a record created only if absent, holding who took it, where, when and for which command:
- one-box: a JSON file in the stack's state dir, created exclusively (O_EXCL);
- AWS: an SSM parameter (`/photostack/<stack>/ops/lock`) put without Overwrite, which SSM refuses
  with ParameterAlreadyExists while someone holds it: every operator's laptop and CI see one lock.
A lock whose process is gone (same machine, pid not alive) is stale and taken over with a note;
any other held lock stops the second command with one line naming the holder, its command and
its age. `force` takes a live lock anyway and says what that breaks.
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
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ops.stack import Stack


class LockHeld(RuntimeError):
    """Another command holds the lock."""


@dataclass(frozen=True)
class LockInfo:
    """Who holds the lock."""

    owner: str
    host: str
    pid: int
    since: float
    purpose: str

    def describe(self, now: float | None = None) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        age = max(0, int((now or time.time()) - self.since))
        return f"{self.purpose} by {self.owner}@{self.host} (pid {self.pid}) since {when} ({_age(age)} ago)"


def _age(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


class LockStore(Protocol):
    """Where the lock lives: `create` succeeds only when nobody holds it."""

    where: str

    def create(self, info: LockInfo) -> bool: ...

    def read(self) -> LockInfo | None: ...

    def delete(self) -> None: ...


class FileStore:
    """The one-box's lock: a file in the state dir."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    def create(self, info: LockInfo) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(asdict(info)))
        return True

    def read(self) -> LockInfo | None:
        return read_lock(self.path)

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


class SsmStore:
    """An AWS stack's lock: an SSM parameter created without Overwrite (a conditional write)."""

    def __init__(self, ssm: Any, name: str) -> None:
        self.ssm, self.name = ssm, name
        self.where = f"SSM parameter {name}"

    def create(self, info: LockInfo) -> bool:
        try:
            self.ssm.put_parameter(Name=self.name, Value=json.dumps(asdict(info)), Type="String", Overwrite=False)
        except self.ssm.exceptions.ParameterAlreadyExists:
            return False
        return True

    def read(self) -> LockInfo | None:
        try:
            value = self.ssm.get_parameter(Name=self.name)["Parameter"]["Value"]
        except self.ssm.exceptions.ParameterNotFound:
            return None
        return LockInfo(**json.loads(value))

    def delete(self) -> None:
        try:
            self.ssm.delete_parameter(Name=self.name)
        except self.ssm.exceptions.ParameterNotFound:
            pass


def lock_parameter(stack: str) -> str:
    """The SSM parameter holding an AWS stack's lock."""
    return f"/photostack/{stack}/ops/lock"


def stack_lock(stack: Stack, lock_file: str = "deploy.lock") -> LockStore:
    """The stack's one lock: a file in its state dir on the one-box, an SSM parameter on AWS."""
    return stack.target.shared(stack.name, lambda directory: FileStore(directory / lock_file),
                               lambda client: SsmStore(client("ssm"), lock_parameter(stack.name)))


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
    """The holder of the lock file at `path`, or None when nobody holds it."""
    try:
        return LockInfo(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None


def forced_note(current: LockInfo) -> str:
    """What `--force` breaks, said when it takes a live lock."""
    return (f"forced the lock held by {current.describe()}: if that command is still running, both now "
            "change the stack at once (check with its holder; its own release will not remove your lock)")


@contextmanager
def held(
    where: Path | LockStore, purpose: str, notes: list[str] | None = None, force: bool = False
) -> Iterator[LockInfo]:
    """Hold the lock for the block; LockHeld if someone else holds it (unless `force`)."""
    store = FileStore(where) if isinstance(where, Path) else where
    info = LockInfo(os.environ.get("USER", "unknown"), socket.gethostname(), os.getpid(), time.time(), purpose)
    for _ in range(2):
        if store.create(info):
            break
        current = store.read()
        if current is not None and not is_stale(current) and not force:
            raise LockHeld(f"deploy lock held: {current.describe()} ({store.where}; "
                           "`--force` only if that command is gone)")
        if notes is not None and current is not None:
            notes.append(forced_note(current) if not is_stale(current) else f"took over a stale lock: {current.describe()}")
        store.delete()
    else:
        raise LockHeld(f"deploy lock {store.where} keeps reappearing; another command is starting")
    try:
        yield info
    finally:
        # Only our own: someone who forced the lock meanwhile keeps theirs.
        if store.read() == info:
            store.delete()
