"""A rolling deploy of the one-box app fleet under GET load through nginx: the shared body of
the deploy drill test and bench/deploy.py."""

from __future__ import annotations

from dataclasses import dataclass

from ops import rollout
from ops.stack import Stack
from tests.drills.httpload import HttpLoad, LoadResult


@dataclass
class DeployRun:
    log: rollout.DeployLog
    load: LoadResult
    during: int  # requests completed while the deploy ran


def deploy_under_load(stack: Stack, clients: int = 4, warmup_requests: int = 100) -> DeployRun:
    """`ops deploy` (the working tree) while `clients` threads GET pages through nginx: the load
    is flowing before the deploy starts and still flowing after it ends."""
    load = HttpLoad(stack.config.onebox.http_port, ["/health", "/api/users/alice", "/api/users/bob"],
                   clients=clients, max_seconds=120).start()
    try:
        load.wait_for_more(warmup_requests)
        before = load.result.total
        log = rollout.deploy(stack)
        during = load.result.total - before
        load.wait_for_more(warmup_requests)
    finally:
        result = load.stop()
    return DeployRun(log, result, during)
