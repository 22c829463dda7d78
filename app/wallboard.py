"""The live wallboard: per-second series from the app's own Redis counters, and event markers.

Every app process writes, for the second it is in (`int(time.time())`):
- `photostack:second:<series>:<second>`: events of that second (photos, likes, sign-ups:
  app/counters.py; requests and 5xx answers: `middleware` below), expiring after `KEEP_S`;
- `photostack:latency:<second>`: a hash of request durations, field = bucket index
  (`bucket(ms)`, ~5 % wide), value = how many requests fell in it, for the p99.
Markers (deploys, failovers) live in the list monitoring/wallboard_markers.py describes; `ops`
writes them with `python -m app.wallboard mark KIND TEXT` on an app host. Page markers come from
the monitoring host's file beside the Munin pages, which the page fetches and merges itself; the
stack's recent audit trail (ops/audit.py) is a file beside it, which the page lists.

`GET /wallboard/` is the page (big numbers, one-second charts, for a TV); it polls
`GET /wallboard/data.json` every second. Queue depth is read from the broker (passive queue
declares on a pooled connection) at most once a second per process and kept as a series too.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable

import redis
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from app import counters
from app.counters import KEEP_S, record_second, second_key
from app.clients import redis_client
from monitoring import wallboard_markers as markers

log = logging.getLogger(__name__)

LATENCY_PREFIX = "photostack:latency:"
WINDOW_S = 300  # default and largest window of /wallboard/data.json
REQUESTS, ERRORS, QUEUE_DEPTH = "requests", "errors_5xx", "queue_depth"
EVENTS = (counters.PHOTOS_POSTED, counters.LIKES, counters.SIGNUPS)
# Paths that are not users' requests: the load balancer's and watcher's probes, this board itself.
UNMEASURED = ("/health", "/wallboard/")  # /health/node too: a prefix
BUCKET_BASE = 1.05


def bucket(ms: float) -> int:
    """The latency bucket of a duration: buckets are ~5 % wide, so a p99 is within 5 %."""
    return max(0, math.ceil(math.log(max(ms, 0.01) / 0.01, BUCKET_BASE)))


def bucket_ms(index: int) -> float:
    """The upper bound of a latency bucket, in milliseconds."""
    return 0.01 * BUCKET_BASE ** index


def percentile(histogram: dict[int, int], share: float) -> float | None:
    """The upper bound (ms) of the bucket that holds the `share` quantile; None without requests."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = math.ceil(share * total)
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return round(bucket_ms(index), 1)
    raise AssertionError("unreachable: the ranks add up to the total")


def middleware(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Count each user request, its 5xx answer and its duration in the second it ended (one round
    trip, best effort: a Redis error never fails the request)."""

    def measure(request: HttpRequest) -> HttpResponse:
        started = time.monotonic()
        response = get_response(request)
        if request.path.startswith(UNMEASURED):
            return response
        ms = (time.monotonic() - started) * 1000
        second = int(time.time())
        try:
            pipe = redis_client().pipeline(transaction=False)
            record_second(pipe, REQUESTS, second=second)
            if response.status_code >= 500:
                record_second(pipe, ERRORS, second=second)
            pipe.hincrby(f"{LATENCY_PREFIX}{second}", str(bucket(ms)), 1)
            pipe.expire(f"{LATENCY_PREFIX}{second}", KEEP_S)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("wallboard: request not counted: %s", exc)
        return response

    return measure


def record_marker(kind: str, text: str) -> dict:
    """Add a marker (monitoring/wallboard_markers.py) and return it."""
    return markers.push(redis_client(), kind, text)


def queue_depth() -> int | None:
    """Messages waiting in the app's queues, or None when the broker does not answer."""
    from app.celery import FEED_QUEUE, THUMBNAIL_QUEUE, celery_app

    try:
        with celery_app.pool.acquire(block=True, timeout=1) as conn:
            channel = conn.default_channel
            return sum(channel.queue_declare(name, passive=True).message_count for name in (THUMBNAIL_QUEUE, FEED_QUEUE))
    except Exception as exc:  # noqa: BLE001 — kombu raises many kinds; the board shows "unknown"
        log.warning("wallboard: queue depth unknown: %s", exc)
        return None


def sample_queue_depth(client: redis.Redis, second: int) -> None:
    """Store this second's queue depth once (whichever process asks first in that second)."""
    key = second_key(QUEUE_DEPTH, second)
    if client.exists(key):
        return
    depth = queue_depth()
    if depth is not None:
        client.set(key, depth, ex=KEEP_S, nx=True)


def snapshot(window: int = WINDOW_S, now: int | None = None) -> dict:
    """The board's data: per-second series over the last `window` seconds (oldest first, the
    current second last), totals, the p99 of the last ten complete seconds, and the markers
    inside the window."""
    client = redis_client()
    now = int(time.time()) if now is None else now
    sample_queue_depth(client, now)
    seconds = list(range(now - window + 1, now + 1))
    names = [*EVENTS, REQUESTS, ERRORS, QUEUE_DEPTH]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.mget([second_key(name, s) for s in seconds])
    for s in seconds:
        pipe.hgetall(f"{LATENCY_PREFIX}{s}")
    pipe.mget([counters.key(name) for name in EVENTS])
    pipe.lrange(markers.KEY, 0, markers.KEPT - 1)
    replies = pipe.execute()
    series: dict[str, list[int | float | None]] = {}
    for name, values in zip(names, replies[: len(names)]):
        # Queue depth is a level (unknown where nobody looked); the others are counts (none = 0).
        series[name] = [None if v is None and name == QUEUE_DEPTH else int(v or 0) for v in values]
    histograms = replies[len(names): len(names) + window]
    parsed = [{int(k): int(v) for k, v in h.items()} for h in histograms]
    series["p99_ms"] = [percentile(h, 0.99) for h in parsed]
    recent: dict[int, int] = {}
    for h in parsed[-11:-1]:  # the last ten complete seconds
        for index, count in h.items():
            recent[index] = recent.get(index, 0) + count
    totals = dict(zip(EVENTS, (int(v or 0) for v in replies[-2])))
    shown = [m for m in (json.loads(raw) for raw in replies[-1]) if m["at"] >= seconds[0]]
    return {"now": now, "start": seconds[0], "window": window, "series": series, "totals": totals,
            "p99_10s_ms": percentile(recent, 0.99), "markers": sorted(shown, key=lambda m: m["at"])}


@require_GET
def data(request: HttpRequest) -> JsonResponse:
    """GET /wallboard/data.json[?window=S]: `snapshot()`; never cached."""
    try:
        window = int(request.GET.get("window", WINDOW_S))
    except ValueError:
        return JsonResponse({"error": "window: an integer number of seconds"}, status=400)
    if not 10 <= window <= WINDOW_S:
        return JsonResponse({"error": f"window: between 10 and {WINDOW_S} seconds"}, status=400)
    try:
        body = snapshot(window)
    except redis.RedisError as exc:
        return JsonResponse({"error": f"counters unavailable: {type(exc).__name__}"}, status=503)
    response = JsonResponse(body)
    response["Cache-Control"] = "no-store"
    return response


@require_GET
def page(request: HttpRequest) -> HttpResponse:
    """GET /wallboard/: the TV page (all drawing happens in the browser)."""
    return render(request, "wallboard.html", {"window": WINDOW_S, "page_markers_url": markers.PAGE_URL,
                                              "audit_url": markers.AUDIT_URL})


def main(argv: list[str] | None = None) -> int:
    """`python -m app.wallboard mark KIND TEXT`: what `ops` runs on an app host to add a marker."""
    parser = argparse.ArgumentParser(prog="python -m app.wallboard")
    commands = parser.add_subparsers(dest="command", required=True)
    mark = commands.add_parser("mark", help="add a marker to the wallboard")
    mark.add_argument("kind", choices=markers.KINDS)
    mark.add_argument("text")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(record_marker(args.kind, args.text)))
    except redis.RedisError as exc:
        print(f"wallboard: marker not recorded: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
