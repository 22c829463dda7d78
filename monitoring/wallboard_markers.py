"""Markers on the live wallboard (app/wallboard.py): deploys, rollbacks, failovers and pages.

One shared place every writer reaches: the Redis list `photostack:markers` in the app's Redis,
newest first, trimmed to the last `KEPT`. Each entry is JSON `{"at": unix time, "kind", "text"}`.
`ops` adds deploy/rollback/failover markers through an app host (ops/markers.py); the alert
pipeline adds a page marker when it opens an incident, where it can reach that Redis (the
one-box; on AWS the monitoring host has no route to Redis, see monitoring/README.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

KEY = "photostack:markers"
KEPT = 200
KINDS = ("deploy", "rollback", "failover", "page")

MarkerWriter = Callable[[str, str], None]


def push(client: Any, kind: str, text: str, at: float | None = None) -> dict[str, Any]:
    """Add a marker through `client` (a redis-py client) in one transaction; returns it."""
    if kind not in KINDS:
        raise ValueError(f"marker kind {kind!r}: must be one of {', '.join(KINDS)}")
    marker = {"at": time.time() if at is None else at, "kind": kind, "text": text}
    pipe = client.pipeline(transaction=True)
    pipe.lpush(KEY, json.dumps(marker))
    pipe.ltrim(KEY, 0, KEPT - 1)
    pipe.execute()
    return marker


def redis_writer(host: str, port: int, password: str | None) -> MarkerWriter:
    """A writer that adds markers to the Redis at `host:port` (the app's login)."""

    def write(kind: str, text: str) -> None:
        import redis  # only the alert path that writes markers needs it

        client = redis.Redis(host=host, port=port, password=password, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            push(client, kind, text)
        finally:
            client.close()

    return write
