"""Run one-off runbook steps on hosts through the engine's SSH layer (same inventory, same keys).

A step is a script built elsewhere (pure functions in roles/*/commands.py or ops/*); this module
only runs it and turns a failure into one clear error naming the host and the step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from roles.engine.executor import HostResult, SshSettings, connect, run_script
from infra.inventory import Host


class StepFailed(RuntimeError):
    """A runbook step failed on a host; the message names the host, the step and why."""


@dataclass
class StepLog:
    """The steps a command took, each with its seconds, and what went wrong without failing it:
    the report of a failover, backup, deploy or shard move."""

    steps: list[tuple[str, float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a step did, where it matters (e.g. which instance stopped)

    @contextmanager
    def step(self, name: str, progress: Callable[[str], None]) -> Iterator[None]:
        """Announce `name` through `progress`, then time the block (recorded when it completes)."""
        progress(name)
        began = time.monotonic()
        yield
        self.steps.append((name, time.monotonic() - began))

    def timed(self, name: str, action: Callable[[], object], progress: Callable[[str], None]) -> None:
        """Run `action` as the step `name`."""
        with self.step(name, progress):
            action()

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.steps)


def run_step(host: Host, ssh: SshSettings, what: str, script: str) -> str:
    """Run `script` as root on `host`; its stdout, or StepFailed with the output's last lines."""
    try:
        with connect(host, ssh) as conn:
            code, output = run_script(conn, host, f"exec 2>&1\n{script}")
    except StepFailed:
        raise
    except Exception as exc:  # noqa: BLE001 — any SSH failure is this step's failure
        raise StepFailed(f"{host.name}: {what}: cannot reach the host: {exc}") from exc
    if code != 0:
        tail = " | ".join(line for line in output.strip().splitlines()[-5:] if line.strip()) or "(no output)"
        raise StepFailed(f"{host.name}: {what} failed (exit {code}): {tail}")
    return output


def check_converged(results: list[HostResult], what: str) -> None:
    """Raise StepFailed naming every host where a converge step failed."""
    problems = [f"{r.host.name}: {w}: {why}" for r in results for w, why in r.failed]
    if problems:
        raise StepFailed(f"{what} failed: " + "; ".join(problems))
