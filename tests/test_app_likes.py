"""Like counts stay exact under concurrent likers (through pgbouncer transaction pooling)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg

from tests.app_helpers import post_photo, signed_up

LIKERS = 50
THREADS = 16


def test_fifty_concurrent_likers_give_an_exact_count(app_stack):
    from app import counters

    poster, _ = signed_up("liked")
    photo = post_photo(poster).json()
    likers = [signed_up("liker")[0] for _ in range(LIKERS)]
    before = counters.read_all()["likes"]

    def like_twice(client):
        # Each liker likes twice: the repeat must not count.
        first = client.post(f"/api/photos/{photo['id']}/like", content_type="application/json")
        second = client.post(f"/api/photos/{photo['id']}/like", content_type="application/json")
        return first.status_code, second.status_code

    with ThreadPoolExecutor(THREADS) as pool:
        statuses = list(pool.map(like_twice, likers, timeout=60))
    assert statuses == [(200, 200)] * LIKERS

    assert poster.get(f"/api/photos/{photo['id']}").json()["like_count"] == LIKERS
    from app.shards import router

    r = router()
    with psycopg.connect(app_stack.direct_dsn(f"shard{r.physical_of(int(photo['id']))}")) as conn:
        schema = r.schema_of(int(photo["id"]))
        stored = conn.execute(f"SELECT like_count FROM {schema}.photos WHERE id = %s", (int(photo["id"]),)).fetchone()[0]
        rows = conn.execute(f"SELECT count(*) FROM {schema}.likes WHERE photo_id = %s", (int(photo["id"]),)).fetchone()[0]
    assert stored == rows == LIKERS
    assert counters.read_all()["likes"] - before == LIKERS

    with ThreadPoolExecutor(THREADS) as pool:
        unliked = list(pool.map(lambda c: c.delete(f"/api/photos/{photo['id']}/like").status_code, likers[:20], timeout=60))
    assert unliked == [200] * 20
    assert poster.get(f"/api/photos/{photo['id']}").json()["like_count"] == LIKERS - 20


def test_liking_a_missing_photo_is_404(app_stack):
    client, user = signed_up("nolike")
    # A well-formed id on a real shard that names no photo, and one whose shard cannot exist.
    assert client.post(f"/api/photos/{int(user['id']) + 1}/like", content_type="application/json").status_code == 404
    assert client.post(f"/api/photos/{(1 << 62) | (8191 << 10)}/like", content_type="application/json").status_code == 404
    assert client.post("/api/photos/1/like", content_type="application/json").status_code == 404


def test_like_needs_login(app_stack):
    from django.test import Client

    assert Client().post("/api/photos/123/like", content_type="application/json").status_code == 401
