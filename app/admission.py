"""Admission control in the app: a request it cannot serve in time is refused fast with a 503
and `Retry-After`, never left to hang or turned into a 500.

- The queue deadline: nginx stamps each request it passes on with `X-Request-Start: t=<epoch
  seconds.millis>` (`$msec`). A request that waited longer than PHOTOSTACK_QUEUE_BUDGET_MS
  before a worker thread took it (gunicorn's accept queue, a busy worker, a frozen process
  that woke up) is answered 503 at once, without doing its work: its client is about to give
  up or already has, and doing it anyway is what turns overload into collapse. nginx stamps
  once per request, so a request it retried on this server after another one timed out
  arrives already as old as that timeout: the budget (1.5 s) allows for the 1 s read timeout
  of the retried routes (roles/nginx). nginx's in-flight limit keeps the queue itself short. `/health` is exempt (the load balancer's view
  of the node should not flap with its queue). A stamp from the future (clock skew between the
  nginx and app hosts) counts as no wait; without the header there is no deadline.
- Dependencies that fail: a shard pool that cannot lend a connection within its bounded wait,
  a shard or pgbouncer that drops the connection, Redis unreachable or timing out. Each is a
  503 with `Retry-After` naming the dependency class; the work was not done (a like that
  committed and then hit a cache or counter error answers 200: those paths never raise).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg
import redis
from django.http import HttpRequest, HttpResponse, JsonResponse

from app.config import app_config

QUEUE_HEADER = "HTTP_X_REQUEST_START"
EXEMPT_PATHS = frozenset({"/health", "/health/node"})
RETRY_AFTER_S = 1
# A Postgres or pgbouncer connection lost or not lent in time (psycopg_pool.PoolTimeout is an
# OperationalError too); Redis unreachable or not answering within its socket timeout.
UNAVAILABLE = (psycopg.OperationalError, redis.ConnectionError, redis.TimeoutError)


class NotRefused(logging.Filter):
    """Keeps 503 refusals out of django.request's log: under overload they come by the
    thousand per second, and writing each would spend the CPU the refusal saved (nginx's
    access log and the Munin 5xx graph count them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "status_code", None) != 503


def refused(message: str) -> JsonResponse:
    """The 503 every refusal gets (the API's error shape, with Retry-After)."""
    response = JsonResponse({"error": message}, status=503)
    response["Retry-After"] = str(RETRY_AFTER_S)
    return response


def queued_for(request: HttpRequest, now: float) -> float | None:
    """Seconds since nginx passed the request on (None without a readable stamp; ≥ 0)."""
    raw = request.META.get(QUEUE_HEADER, "")
    try:
        started = float(raw.removeprefix("t="))
    except ValueError:
        return None
    return max(0.0, now - started)


class AdmissionMiddleware:
    """The queue deadline before any work; dependency failures of the view mapped to 503."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.budget_s = app_config().queue_budget_ms / 1000

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path not in EXEMPT_PATHS:
            waited = queued_for(request, time.time())
            if waited is not None and waited > self.budget_s:
                return refused(f"overloaded: queued {waited * 1000:.0f} ms, over the {self.budget_s * 1000:.0f} ms budget")
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """503 for a dependency that is down or too slow; anything else stays a 500."""
        if isinstance(exception, UNAVAILABLE):
            return refused(f"a dependency is unavailable ({type(exception).__name__}); try again")
        return None
