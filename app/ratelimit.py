"""Fixed-window rate limits in the app's Redis: `hit(key, limit, window_s)` counts one event.

Each (key, window) is one Redis counter `photostack:rate:<key>` that expires with its window: one
round trip per hit (INCR + EXPIRE NX + TTL, pipelined). A fixed window lets a client through at
most 2 × limit around a window boundary, which is fine for throttling guessers and floods.

Fail open: when Redis does not answer, every hit is allowed (logged). Refusing all logins
because the limiter's store is down would turn a Redis outage into a full outage; sessions and
feeds need Redis anyway, so the limiter adds no new way to fail.
"""

from __future__ import annotations

import logging

import redis

from app.clients import redis_client
from app.config import Rate

log = logging.getLogger(__name__)

PREFIX = "photostack:rate:"


def hit(key: str, rate: Rate) -> int | None:
    """Count one event against `key`: None while within `rate`, else the seconds until its
    window ends (the Retry-After). An event over the limit still counts (a client that keeps
    hammering stays refused until the window ends)."""
    name = PREFIX + key
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.incr(name)
        pipe.expire(name, rate.window_s, nx=True)
        pipe.ttl(name)
        count, _, ttl = pipe.execute()
    except redis.RedisError as exc:
        log.warning("rate limit %s not checked, Redis failed: %s", key, exc)
        return None
    if count <= rate.limit:
        return None
    return max(1, int(ttl))
