"""Event counters that monitoring graphs: one Redis INCR per event.

Each key holds a monotonically increasing integer total since the Redis dataset was created
(Munin: plugin field type DERIVE with min 0 turns it into a rate; a reset after a Redis wipe
reads as a drop that DERIVE/min 0 ignores). Keys are plain strings: `GET key` or
`MGET key...` returns the total; a missing key means 0. Each increment also counts in
`photostack:second:<name>:<unix second>` (expiring), the wallboard's one-second series.

| Redis key                              | Incremented when                            |
|----------------------------------------|---------------------------------------------|
| `photostack:counter:signups`           | a user signs up                             |
| `photostack:counter:photos_posted`     | a photo is stored (row + image)             |
| `photostack:counter:likes`             | a like is recorded (not repeats, not unlikes)|
| `photostack:counter:comments`          | a comment is recorded                       |
| `photostack:counter:follows`           | a new follow edge is recorded               |
| `photostack:counter:thumbnails`        | the worker stores a thumbnail               |
| `photostack:counter:feed_fanout_writes`| a photo id is pushed to one follower's feed |
"""

from __future__ import annotations

import logging
import time

import redis

from app.clients import redis_client

log = logging.getLogger(__name__)

PREFIX = "photostack:counter:"
SIGNUPS = "signups"
PHOTOS_POSTED = "photos_posted"
LIKES = "likes"
COMMENTS = "comments"
FOLLOWS = "follows"
THUMBNAILS = "thumbnails"
FEED_FANOUT_WRITES = "feed_fanout_writes"
ALL = (SIGNUPS, PHOTOS_POSTED, LIKES, COMMENTS, FOLLOWS, THUMBNAILS, FEED_FANOUT_WRITES)
SECOND_PREFIX = "photostack:second:"
KEEP_S = 900  # per-second keys outlive the longest window the wallboard asks for


def key(name: str) -> str:
    """The Redis key of a counter."""
    return PREFIX + name


def incr(name: str, amount: int = 1) -> None:
    """Add to a counter and to its count of the current second (the wallboard's series,
    app/wallboard.py), in one round trip. Best effort: the event itself already happened, so a
    Redis error is logged, never turned into a failed request."""
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.incrby(key(name), amount)
        record_second(pipe, name, amount)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("counter %s not incremented: %s", name, exc)


def read_all() -> dict[str, int]:
    """Every counter's current total (one MGET)."""
    values = redis_client().mget([key(name) for name in ALL])
    return {name: int(value or 0) for name, value in zip(ALL, values)}


def second_key(series: str, second: int) -> str:
    """The Redis key of one series' count for one second."""
    return f"{SECOND_PREFIX}{series}:{second}"


def record_second(pipe: redis.client.Pipeline, series: str, amount: int = 1, second: int | None = None) -> None:
    """Queue on `pipe` the commands that add `amount` to `series` for the current second."""
    key = second_key(series, int(time.time()) if second is None else second)
    pipe.incrby(key, amount)
    pipe.expire(key, KEEP_S)
