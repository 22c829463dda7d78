"""Memcached down or hung is a cache miss: likes, unlikes and feed reads still answer 200, and a
like is stored exactly once (a like answered 500 after it was stored would be retried)."""

from __future__ import annotations

import os
import signal

import psycopg
import pytest

from tests.app_helpers import post_photo, signed_up, wait_for
from tests.app_services import _kill_group, start_memcached, wait_port


def stored_likes(stack, photo_id: int) -> tuple[int, int]:
    """(like_count column, rows in likes) of a photo, straight from PostgreSQL."""
    from app.shards import router

    r = router()
    with psycopg.connect(stack.direct_dsn(f"shard{r.physical_of(photo_id)}")) as conn:
        schema = r.schema_of(photo_id)
        count = conn.execute(f"SELECT like_count FROM {schema}.photos WHERE id = %s", (photo_id,)).fetchone()[0]
        rows = conn.execute(f"SELECT count(*) FROM {schema}.likes WHERE photo_id = %s", (photo_id,)).fetchone()[0]
    return count, rows


def likes_and_feeds_work(stack, poster, photo: dict) -> None:
    """Two likers like (one twice), one unlikes; every answer is 200 with the exact count, the
    feed still lists the photo, and the shard holds each like once."""
    pid = int(photo["id"])
    likers = [signed_up("cachedownliker")[0] for _ in range(2)]
    answers = [likers[0].post(f"/api/photos/{pid}/like", content_type="application/json"), likers[0].post(f"/api/photos/{pid}/like", content_type="application/json"),
               likers[1].post(f"/api/photos/{pid}/like", content_type="application/json")]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.content for a in answers]
    assert [a.json()["like_count"] for a in answers] == [1, 1, 2]
    feed = poster.get("/api/feed")
    assert feed.status_code == 200, feed.content
    assert [p["id"] for p in feed.json()["photos"]] == [photo["id"]]
    assert feed.json()["photos"][0]["like_count"] == 2
    unliked = likers[1].delete(f"/api/photos/{pid}/like")
    assert unliked.status_code == 200 and unliked.json()["like_count"] == 1
    assert poster.get(f"/api/photos/{pid}").json()["like_count"] == 1
    assert stored_likes(stack, pid) == (1, 1)


@pytest.fixture
def photo_in_feed(app_stack):
    """(poster's client, a photo already in the poster's feed, its record cached)."""
    poster, _ = signed_up("cachedown")
    photo = post_photo(poster).json()
    wait_for(lambda: [p["id"] for p in poster.get("/api/feed").json()["photos"]] == [photo["id"]])
    wait_for(lambda: poster.get("/api/feed").json()["photos"][0]["thumbnail_url"])
    return poster, photo


def test_memcached_killed_is_a_miss_for_likes_and_feed_reads(app_stack, photo_in_feed):
    poster, photo = photo_in_feed
    _kill_group(app_stack.procs["memcached"])
    try:
        likes_and_feeds_work(app_stack, poster, photo)
    finally:
        start_memcached(app_stack)
        wait_port(app_stack.memcached_port, app_stack.procs["memcached"], 10, "memcached")
    # Back in use once it answers again: a record read now is cached.
    from app.clients import memcache_client

    key = f"photo:{photo['id']}"
    assert wait_for(lambda: poster.get(f"/api/photos/{photo['id']}") and memcache_client().get_many([key]))


def test_memcached_frozen_is_a_miss_for_likes_and_feed_reads(app_stack, photo_in_feed):
    poster, photo = photo_in_feed
    memcached = app_stack.procs["memcached"]
    os.kill(memcached.pid, signal.SIGSTOP)  # alive and accepting, answering nothing
    try:
        likes_and_feeds_work(app_stack, poster, photo)
    finally:
        os.kill(memcached.pid, signal.SIGCONT)
