"""A reader's cache refill racing the thumbnail worker's delete cannot hide a thumbnail for long."""

from __future__ import annotations

import time

import psycopg

from tests.app_helpers import jpeg, signed_up


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
