"""Markers on the live wallboard (app/wallboard.py): deploys, rollbacks, failovers and pages.

Deploy, rollback and failover markers: the Redis list `photostack:markers` in the app's Redis,
newest first, trimmed to the last `KEPT`, each entry JSON `{"at": unix time, "kind", "text"}`;
`ops` adds them through an app host (ops/markers.py), and /wallboard/data.json returns them.

Page markers come from the alert pipeline, which runs on the monitoring host (Munin's and the
health watcher's root-owned hooks): on AWS that host has no route to Redis, and the hooks need
no Redis login. They go to `PAGE_FILE` instead, a JSON list of the same entries in a root-owned
directory that the munin_master role makes; nginx serves it at `PAGE_URL`, beside the Munin pages
(on AWS behind the same operator login as the wallboard, which is on the same origin), and the
wallboard merges it into what it draws. The same on every target.
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.atomic_file import write_atomic

KEY = "photostack:markers"
KEPT = 200
KINDS = ("deploy", "rollback", "failover", "page")

PAGE_FILE = "/var/lib/photostack-wallboard/page-markers.json"
PAGE_URL = "/munin/page-markers.json"
# The stack's recent audit trail (ops/audit.py `publish`), beside the page markers: the monitoring
# host copies it there from where the trail lives; the wallboard lists it.
AUDIT_FILE = "/var/lib/photostack-wallboard/audit.json"
AUDIT_URL = "/munin/audit.json"

MarkerWriter = Callable[[str, str], None]


def new_marker(kind: str, text: str, at: float | None = None) -> dict[str, Any]:
    """A marker entry; ValueError naming the kinds for an unknown `kind`."""
    if kind not in KINDS:
        raise ValueError(f"marker kind {kind!r}: must be one of {', '.join(KINDS)}")
    return {"at": time.time() if at is None else at, "kind": kind, "text": text}


def push(client: Any, kind: str, text: str, at: float | None = None) -> dict[str, Any]:
    """Add a marker through `client` (a redis-py client) in one transaction; returns it."""
    marker = new_marker(kind, text, at)
    pipe = client.pipeline(transaction=True)
    pipe.lpush(KEY, json.dumps(marker))
    pipe.ltrim(KEY, 0, KEPT - 1)
    pipe.execute()
    return marker


def file_writer(path: Path) -> MarkerWriter:
    """A writer that adds markers to the JSON list at `path` (newest first, the last `KEPT`),
    replaced whole and readable by all (nginx serves it); one writer at a time (Munin's and the
    watcher's hooks may page at once). Its directory must be root's own: root writes it."""

    def write(kind: str, text: str) -> None:
        marker = new_marker(kind, text)
        with open(path.parent / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            kept = json.loads(path.read_text()) if path.exists() else []
            write_atomic(path, json.dumps([marker, *kept][:KEPT]), mode=0o644)

    return write
