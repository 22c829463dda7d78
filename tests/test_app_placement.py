"""Every object lives on the physical shard its owner's logical shard maps to, with an id that
decodes to that logical shard; /health answers ok."""

from __future__ import annotations


import psycopg

from tests.app_helpers import post_photo, signed_up


def test_objects_live_on_their_owners_shard(app_stack):
    from app.shards import router, username_shard
    from infra.config import INSTAGRAM_EPOCH_MS
    from infra.sharding import decode_id, schema_name

    r = router()
    seen_physical = set()
    for attempt in range(20):  # until both physical shards were hit (hash placement; 2^-19 to miss)
        if attempt >= 3 and seen_physical == {0, 1}:
            break
        poster, user = signed_up("placed")
        liker, liker_user = signed_up("placer")
        uid = int(user["id"])
        logical = decode_id(uid, INSTAGRAM_EPOCH_MS).logical_shard
        assert logical == username_shard(user["username"], r.shard_map.logical_shards)
        physical = r.shard_map.physical_of(logical)
        seen_physical.add(physical)

        photo_id = int(post_photo(poster).json()["id"])
        assert decode_id(photo_id, INSTAGRAM_EPOCH_MS).logical_shard == logical
        assert liker.post(f"/api/photos/{photo_id}/like", content_type="application/json").status_code == 200
        assert liker.post(f"/api/photos/{photo_id}/comments", {"body": "hi"}, content_type="application/json").status_code == 201
        assert liker.post(f"/api/users/{user['username']}/follow", content_type="application/json").status_code == 200

        schema = schema_name(logical)
        with psycopg.connect(app_stack.direct_dsn(f"shard{physical}")) as conn:
            assert conn.execute(f"SELECT username FROM {schema}.users WHERE id = %s", (uid,)).fetchone()[0] == user["username"]
            assert conn.execute(f"SELECT user_id FROM {schema}.photos WHERE id = %s", (photo_id,)).fetchone()[0] == uid
            like_id = conn.execute(f"SELECT id FROM {schema}.likes WHERE photo_id = %s", (photo_id,)).fetchone()[0]
            comment_id = conn.execute(f"SELECT id FROM {schema}.comments WHERE photo_id = %s", (photo_id,)).fetchone()[0]
            assert conn.execute(f"SELECT follower_id FROM {schema}.followers WHERE user_id = %s", (uid,)).fetchone()[0] == int(liker_user["id"])
        # Likes and comments belong to the photo: its shard, ids from its next_id().
        assert {decode_id(like_id, INSTAGRAM_EPOCH_MS).logical_shard, decode_id(comment_id, INSTAGRAM_EPOCH_MS).logical_shard} == {logical}
        # The other physical shard holds none of it.
        with psycopg.connect(app_stack.direct_dsn(f"shard{1 - physical}")) as conn:
            assert conn.execute("SELECT to_regnamespace(%s)", (schema,)).fetchone()[0] is None
        # The follower's half of the edge is on the follower's shard.
        liker_logical = decode_id(int(liker_user["id"]), INSTAGRAM_EPOCH_MS).logical_shard
        with psycopg.connect(app_stack.direct_dsn(f"shard{r.shard_map.physical_of(liker_logical)}")) as conn:
            assert conn.execute(
                f"SELECT target_id FROM {schema_name(liker_logical)}.following WHERE user_id = %s", (int(liker_user["id"]),)
            ).fetchone()[0] == uid
    assert seen_physical == {0, 1}, "users should land on both physical shards"


def test_health_is_ok(app_stack):
    """Every dependency answers (its speed is measured by bench/latency.py, not asserted here)."""
    from django.test import Client

    client = Client()
    for _ in range(3):  # the first request opens the pools; later ones reuse them
        response = client.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "checks": {"shard0": "ok", "shard1": "ok", "redis": "ok"}}
