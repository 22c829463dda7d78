"""Maintenance silences: while one matches, triggers are logged instead of paging.

Stored as JSON in the stack's state dir (`silences.json`), each with an expiry; expired ones are
ignored on read and dropped on the next write. A silence matches by host, by alert, or both
(neither = everything). `--alert` accepts the runbook name (`redis_memory_high`), the plugin
(`redis`) or `plugin.field` (`redis.used_memory`).

On AWS the operators' laptops and the munin master share them: each silence is an SSM parameter
under `/photostack/<stack>/silences/` (`SsmSilenceStore`), which `ops silence` writes and the
munin master's alert pipeline reads with its instance profile. Service-wide silences there are
PagerDuty maintenance windows instead (monitoring/integrations/maintenance_windows.py).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infra.alerts import Alert, silences_path
from infra.atomic_file import write_atomic
from infra.config import StackConfig
from infra.targets import target_of

FILE_NAME = "silences.json"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+)([smhd])")


def parse_duration(text: str) -> int:
    """Seconds in a duration such as `30m`, `2h`, `1h30m` or `45s`; ValueError if malformed."""
    compact = text.strip().lower()
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"duration {text!r} is not like 30m, 2h, 1h30m or 45s")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be longer than zero")
    return seconds


@dataclass(frozen=True)
class Silence:
    """Suppress pages for `host` and/or `alert` until `until` (Unix seconds)."""

    id: str
    until: float
    host: str | None = None
    alert: str | None = None
    created: float = 0.0

    def matches(self, alert: Alert, now: float) -> bool:
        if now >= self.until:
            return False
        if self.host is not None and self.host != alert.host:
            return False
        names = {alert.name, alert.plugin, f"{alert.plugin}.{alert.field}"}
        return self.alert is None or self.alert in names


class _Silences:
    """What every store of silences answers from its own `_read()`."""

    def _read(self) -> list[Silence]:
        raise NotImplementedError

    def active(self, now: float | None = None) -> list[Silence]:
        """Silences that have not expired yet."""
        now = time.time() if now is None else now
        return [s for s in self._read() if s.until > now]

    def matching(self, alert: Alert, now: float | None = None) -> Silence | None:
        """The first active silence that covers `alert`, if any."""
        now = time.time() if now is None else now
        return next((s for s in self._read() if s.matches(alert, now)), None)


class SilenceStore(_Silences):
    """The silences of one stack, in `<state dir>/silences.json`."""

    def __init__(self, directory: Path):
        self.path = directory / FILE_NAME

    def _read(self) -> list[Silence]:
        if not self.path.exists():
            return []
        return [Silence(**item) for item in json.loads(self.path.read_text())]

    def _write(self, silences: list[Silence]) -> None:
        write_atomic(self.path, json.dumps([asdict(s) for s in silences], indent=2))

    def add(self, seconds: int, host: str | None = None, alert: str | None = None,
            now: float | None = None) -> Silence:
        """Silence `host`/`alert` for `seconds`; drops expired silences while writing."""
        now = time.time() if now is None else now
        silence = Silence(id=uuid.uuid4().hex[:8], until=now + seconds, host=host, alert=alert, created=now)
        self._write([*self.active(now), silence])
        return silence

    def clear(self) -> int:
        """Remove every silence; returns how many were active."""
        count = len(self.active())
        self._write([])
        return count


class SsmSilenceStore(_Silences):
    """An AWS stack's silences: one SSM parameter each, read by every operator and the munin master."""

    def __init__(self, ssm: Any, stack: str):
        self.ssm, self.path = ssm, silences_path(stack)

    def _read(self) -> list[Silence]:
        pages = self.ssm.get_paginator("get_parameters_by_path").paginate(Path=self.path)
        return [Silence(**json.loads(p["Value"])) for page in pages for p in page["Parameters"]]

    def add(self, seconds: int, host: str | None = None, alert: str | None = None,
            now: float | None = None) -> Silence:
        """Silence `host`/`alert` for `seconds`; deletes expired silences."""
        now = time.time() if now is None else now
        self._delete([s for s in self._read() if s.until <= now])
        silence = Silence(id=uuid.uuid4().hex[:8], until=now + seconds, host=host, alert=alert, created=now)
        self.ssm.put_parameter(Name=self.path + silence.id, Value=json.dumps(asdict(silence)), Type="String")
        return silence

    def clear(self) -> int:
        """Remove every silence; returns how many were active."""
        every = self._read()
        self._delete(every)
        return sum(1 for s in every if s.until > time.time())

    def _delete(self, silences: list[Silence]) -> None:
        names = [self.path + s.id for s in silences]
        for start in range(0, len(names), 10):  # DeleteParameters takes at most 10 names
            self.ssm.delete_parameters(Names=names[start:start + 10])


def silence_store(stack: str, config: StackConfig) -> SilenceStore | SsmSilenceStore:
    """Where a stack's silences live: the state dir on the one-box, SSM on AWS (its target's
    shared operations state)."""
    return target_of(config).shared(stack, SilenceStore, lambda client: SsmSilenceStore(client("ssm"), stack))
