"""Home feeds: fan-out on write into Redis lists, hydrated on read.

- Key `feed:<user id>`: a Redis list of photo ids, newest first, capped at FEED_LENGTH.
- Posting a photo enqueues `make_thumbnail` (app/tasks.py), which makes the thumbnail and then
  pushes the id to the poster's own feed and the first FANOUT_CHUNK (Instagram's 10,000)
  followers; each further chunk is a `fanout_photo` task (keyset-paginated on follower id).
  A chunk is one pipelined round trip of LPUSH + LTRIM per follower.
- A redelivered task (acks_late) can push an id twice; reading drops repeats, so it is harmless.
- Reading: LRANGE, then photo records from Memcached, then one query per physical shard for
  the misses (app/photos.py).
"""

from __future__ import annotations

from app.clients import redis_client
from app.photos import photo_records

FEED_LENGTH = 500
FANOUT_CHUNK = 10_000


def feed_key(user_id: int) -> str:
    """The Redis key of a user's feed."""
    return f"feed:{user_id}"


def push_to_feeds(photo_id: int, user_ids: list[int]) -> None:
    """Put a photo at the head of each user's feed, keeping each feed capped."""
    if not user_ids:
        return
    pipe = redis_client().pipeline(transaction=False)
    for user_id in user_ids:
        key = feed_key(user_id)
        pipe.lpush(key, photo_id)
        pipe.ltrim(key, 0, FEED_LENGTH - 1)
    pipe.execute()


def feed_ids(user_id: int, offset: int, limit: int) -> list[int]:
    """Photo ids of one page of a feed, newest first, without repeats."""
    raw = redis_client().lrange(feed_key(user_id), offset, offset + limit - 1)
    seen: set[int] = set()
    ids = []
    for item in raw:
        photo_id = int(item)
        if photo_id not in seen:
            seen.add(photo_id)
            ids.append(photo_id)
    return ids


def read_feed(user_id: int, offset: int = 0, limit: int = 30) -> list[dict]:
    """One page of a user's feed as photo records, in feed order (photos gone since are skipped)."""
    ids = feed_ids(user_id, offset, limit)
    records = photo_records(ids)
    return [records[pid] for pid in ids if pid in records]
