"""A reader's cache refill racing a writer's delete (the thumbnail worker's, a like's) cannot
hide the change for long."""

from __future__ import annotations

import json
import time

import psycopg

from tests.app_helpers import jpeg, signed_up, wait_for


def test_a_stale_record_without_thumbnail_expires_in_seconds(app_stack):
    from app import photos
    from app.shards import router

    _, user = signed_up("cacherace")
    # Stored without queueing its task: no worker touches it during the test.
    record = photos.create_photo(int(user["id"]), jpeg(), "race", 1 << 20)
    pid = record["id"]
    assert photos.photo_record(pid)["thumb_key"] is None  # the reader cached "no thumbnail yet"
    # The worker's write lands, but its cache delete came before the reader's refill above.
    r = router()
    with psycopg.connect(app_stack.direct_dsn(f"shard{r.physical_of(pid)}"), autocommit=True) as conn:
        conn.execute(f"UPDATE {r.schema_of(pid)}.photos SET thumb_key = 't/race.jpg' WHERE id = %s", (pid,))
    assert photos.photo_record(pid)["thumb_key"] is None  # still the stale copy …
    time.sleep(photos.PENDING_TTL_S + 0.5)
    assert photos.photo_record(pid)["thumb_key"] == "t/race.jpg"  # … for seconds, not minutes
    # A record that has its thumbnail keeps the long TTL (it stays cached past the short one).
    with psycopg.connect(app_stack.direct_dsn(f"shard{r.physical_of(pid)}"), autocommit=True) as conn:
        conn.execute(f"UPDATE {r.schema_of(pid)}.photos SET caption = 'changed' WHERE id = %s", (pid,))
    time.sleep(photos.PENDING_TTL_S + 0.5)
    assert photos.photo_record(pid)["caption"] == "race"


def test_a_refill_racing_a_likes_delete_is_gone_within_seconds(app_stack):
    from app import photos
    from app.clients import REFILL_WITHIN_S, memcache_client

    _, user = signed_up("likerace")
    pid = photos.create_photo(int(user["id"]), jpeg(), "race", 1 << 20)["id"]
    read_at = time.monotonic()
    stale = photos._load_from_shards([pid])[pid]  # a reader reads the row before the like …
    assert photos.like(pid, int(user["id"])) == 1  # … the like commits and deletes the record …
    # … and only then the reader's refill lands (with the long TTL), as a reader writes it: soon
    # enough after its read.
    if time.monotonic() - read_at < REFILL_WITHIN_S:
        memcache_client().set_many({f"photo:{pid}": json.dumps({**stale, "thumb_key": "t/x.jpg"})},
                                   expire=photos.CACHE_TTL_S)
    wait_for(lambda: photos.photo_record(pid)["like_count"] == 1, timeout=5)  # stale for about a second


def test_a_retried_like_that_changes_nothing_still_refreshes_the_count(app_stack):
    """The first attempt was stored by a process that died before its cache delete."""
    from app import photos
    from app.shards import router

    poster, user = signed_up("likeretry")
    pid = photos.create_photo(int(user["id"]), jpeg(), "retry", 1 << 20)["id"]
    assert poster.get(f"/api/photos/{pid}").json()["like_count"] == 0  # cached
    r = router()
    with psycopg.connect(app_stack.direct_dsn(f"shard{r.physical_of(pid)}"), autocommit=True) as conn:
        schema = r.schema_of(pid)
        conn.execute(f"INSERT INTO {schema}.likes (photo_id, user_id) VALUES (%s, %s)", (pid, int(user["id"])))
        conn.execute(f"UPDATE {schema}.photos SET like_count = 1 WHERE id = %s", (pid,))
    retried = poster.post(f"/api/photos/{pid}/like", content_type="application/json")
    assert retried.status_code == 200 and retried.json()["like_count"] == 1
    # Readers see it within the second delete's delay even when the first delete was dropped (a
    # cache timeout on a loaded machine makes the client skip the cache for a second).
    wait_for(lambda: poster.get(f"/api/photos/{pid}").json()["like_count"] == 1, timeout=5)
