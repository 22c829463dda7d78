"""A rolling deploy of the one-box app fleet under GET load through nginx: the shared body of
the deploy drill test and bench/deploy.py."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ops import rollout
from ops.stack import Stack
from tests.drills.httpload import HttpLoad, LoadResult


@dataclass
class DeployRun:
    log: rollout.DeployLog
    load: LoadResult


def deploy_under_load(stack: Stack, clients: int = 4, warmup_s: float = 1.0) -> DeployRun:
    """`ops deploy` (the working tree) while `clients` threads GET pages through nginx."""
    load = HttpLoad(stack.config.onebox.http_port, ["/health", "/api/users/alice", "/api/users/bob"],
                   clients=clients, max_seconds=120).start()
    try:
        time.sleep(warmup_s)
        log = rollout.deploy(stack)
    finally:
        result = load.stop()
    return DeployRun(log, result)
