"""Home feeds: fan-out on write into Redis lists, hydrated on read.

- Key `feed:<user id>`: a Redis list of photo ids, newest first, capped at FEED_LENGTH.
- Posting a photo enqueues `make_thumbnail` (app/tasks.py), which makes the thumbnail and then
  pushes the id to the poster's own feed and the first FANOUT_CHUNK (Instagram's 10,000)
  followers; each further chunk is a `fanout_photo` task (keyset-paginated on follower id).
  A chunk is one pipelined round trip of LPUSH + LTRIM per follower.
- A push only goes to feeds that exist and do not hold the id yet (one Lua call per slice of
  followers): a redelivered task (acks_late) pushes nothing twice, and a feed Redis lost stays
  missing until it is read, instead of restarting with only the newest photo.
- Reading: LRANGE (with EXISTS in the same round trip), then photo records from Memcached, then
  one query per physical shard for the misses (app/photos.py).
- A missing feed (a Redis restart: the primary keeps no data on disk; or a user who never read
  it) is rebuilt on read from the shards: the user's followees (the `following` half of the
  edges, on the user's own shard), then each physical shard's newest photos of the user and
  those followees, merged by id (ids are time-ordered), capped at FEED_LENGTH. The rebuilt list
  ends with the SENTINEL 0 so an empty feed exists too; it is written only if the key is still
  missing (Lua), so racing rebuilds write once. A photo whose fan-out ran in the few
  milliseconds between a rebuild's read and its write is missed by that feed.
"""

from __future__ import annotations

from app.clients import redis_client
from app.photos import photo_records
from app.shards import router

FEED_LENGTH = 500
FANOUT_CHUNK = 10_000
SENTINEL = 0  # the last item of a rebuilt feed: marks it as existing even when it is empty
PUSH_SLICE = 500  # feeds per Lua call: keeps each call short (Redis runs one script at a time)

# KEYS: feeds; ARGV: photo id, FEED_LENGTH. Push where the feed exists and lacks the id.
_PUSH = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 and not redis.call('LPOS', key, ARGV[1]) then
    redis.call('LPUSH', key, ARGV[1])
    redis.call('LTRIM', key, 0, tonumber(ARGV[2]) - 1)
  end
end
return 0
"""
# KEYS[1]: the feed; ARGV: its ids, newest first, then the sentinel. Write only if still missing.
_REBUILD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('RPUSH', KEYS[1], unpack(ARGV))
return 1
"""


def feed_key(user_id: int) -> str:
    """The Redis key of a user's feed."""
    return f"feed:{user_id}"


def push_to_feeds(photo_id: int, user_ids: list[int]) -> None:
    """Put a photo at the head of each existing feed that lacks it, keeping each feed capped."""
    if not user_ids:
        return
    client = redis_client()
    push = client.register_script(_PUSH)
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(user_ids), PUSH_SLICE):
        keys = [feed_key(u) for u in user_ids[start:start + PUSH_SLICE]]
        push(keys=keys, args=[photo_id, FEED_LENGTH], client=pipe)
    pipe.execute()


def followees(user_id: int) -> list[int]:
    """Whom the user follows (the `following` half of each edge is on the user's own shard)."""
    with router().for_object(user_id) as (conn, schema):
        rows = conn.execute(f"SELECT target_id FROM {schema}.following WHERE user_id = %s", (user_id,)).fetchall()
    return [row[0] for row in rows]


def recent_photo_ids(user_ids: list[int], limit: int = FEED_LENGTH) -> list[int]:
    """The newest `limit` photo ids of all these users, newest first: one query per physical
    shard (each schema's part uses the (user_id, id DESC) index)."""
    r = router()
    found: list[int] = []
    for physical, ids in r.group_by_physical(user_ids).items():
        by_schema: dict[str, list[int]] = {}
        for uid in ids:
            by_schema.setdefault(r.schema_of(uid), []).append(uid)
        parts = [f"(SELECT id FROM {schema}.photos WHERE user_id = ANY(%s::bigint[]) ORDER BY id DESC LIMIT {limit})"
                 for schema in by_schema]
        with r.connection(physical) as conn:
            found += [row[0] for row in conn.execute(" UNION ALL ".join(parts), list(by_schema.values()))]
    return sorted(found, reverse=True)[:limit]


def rebuild_feed(user_id: int) -> bool:
    """Rebuild a missing feed from the shards; False if it existed (or another reader won)."""
    ids = recent_photo_ids([user_id, *followees(user_id)])
    client = redis_client()
    return bool(client.register_script(_REBUILD)(keys=[feed_key(user_id)], args=[*ids, SENTINEL]))


def feed_ids(user_id: int, offset: int, limit: int) -> list[int]:
    """Photo ids of one page of a feed, newest first, without repeats (rebuilt first if missing)."""
    key = feed_key(user_id)
    pipe = redis_client().pipeline(transaction=False)
    pipe.exists(key)
    pipe.lrange(key, offset, offset + limit - 1)
    exists, raw = pipe.execute()
    if not exists:
        rebuild_feed(user_id)
        raw = redis_client().lrange(key, offset, offset + limit - 1)
    seen: set[int] = {SENTINEL}
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
