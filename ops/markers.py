"""Wallboard markers: what `ops` records when it changes the running stack (deploys, rollbacks,
failovers), so people watching the photos-per-second board can tell what moved a line.

The marker list lives in the app's Redis (app/wallboard.py); an app host writes it with the
app's own login (`photostack-run python -m app.wallboard mark`), so `ops` needs no Redis
password of its own and reaches Redis wherever it is private (AWS) through the host it already
reaches over SSH. Best effort: the operation happened whatever the board says, so a failure is
a warning line, never a failed command.
"""

from __future__ import annotations

import shlex

from infra.inventory import select
from ops.remote import StepFailed, run_step
from ops.stack import Stack
from roles.app.runtime import LAUNCHER


def mark_command(kind: str, text: str) -> str:
    """The shell command an app host runs to add one marker."""
    return f"{LAUNCHER} python -m app.wallboard mark {shlex.quote(kind)} {shlex.quote(text)}"


def mark(stack: Stack, kind: str, text: str) -> str | None:
    """Add a `kind` marker saying `text`; a warning line if it could not be recorded."""
    hosts = select(stack.hosts, role="app")
    if not hosts:
        return f"wallboard: {kind} marker not recorded: no app host"
    try:
        run_step(hosts[0], stack.ssh, f"wallboard {kind} marker", mark_command(kind, text))
    except StepFailed as exc:
        return f"wallboard: {kind} marker not recorded: {exc}"
    return None
