"""Health endpoints.

`/health/node` for the load balancer, the health watcher and a process's readiness: this process
answers, nothing else is asked. A shard or Redis that is down is down for every node alike; a node
check that asked them would take every node out of service at once and turn a partial outage
(one shard's users) into a whole one.

`/health` for Pingdom and operators: the process answers, and its shard pools and Redis reach
their servers. One `SELECT 1` per physical shard (through the pool the app itself uses) and
one PING; no session, no template, no other middleware work, so it answers in about a
millisecond. 200 when everything answers, 503 naming what did not."""

from __future__ import annotations

import redis
from django.http import HttpRequest, HttpResponse, JsonResponse

from app.clients import redis_client
from app.shards import router
from infra.sharding import physical_db

POOL_WAIT_S = 1.0  # a shard whose pool cannot lend a connection this fast counts as down


def check() -> dict[str, str]:
    """'ok' or the error, per dependency."""
    results: dict[str, str] = {}
    r = router()
    for physical in range(r.shard_map.physical_shards):
        name = physical_db(physical)
        try:
            with r.pool(physical).connection(timeout=POOL_WAIT_S) as conn:
                conn.execute("SELECT 1")
            results[name] = "ok"
        except Exception as exc:  # any failure means "not healthy", reported by class name
            results[name] = type(exc).__name__
    try:
        redis_client().ping()
        results["redis"] = "ok"
    except redis.RedisError as exc:
        results["redis"] = type(exc).__name__
    return results


def health(request: HttpRequest) -> HttpResponse:
    results = check()
    ok = all(v == "ok" for v in results.values())
    return JsonResponse({"status": "ok" if ok else "fail", "checks": results}, status=200 if ok else 503)


def node(request: HttpRequest) -> HttpResponse:
    """200 while this process answers requests (no dependency is asked)."""
    return JsonResponse({"status": "ok"})
