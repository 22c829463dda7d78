"""Run one-off runbook steps on hosts through the engine's SSH layer (same inventory, same keys).

A step is a script built elsewhere (pure functions in roles/*/commands.py or ops/*); this module
only runs it and turns a failure into one clear error naming the host and the step.
"""

from __future__ import annotations

from roles.engine.executor import HostResult, SshSettings, connect, run_script
from infra.inventory import Host


class StepFailed(RuntimeError):
    """A runbook step failed on a host; the message names the host, the step and why."""


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
