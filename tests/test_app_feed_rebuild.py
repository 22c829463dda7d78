"""A feed Redis lost is rebuilt from the shards on read (real Postgres/Redis/worker of app_stack)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import redis

from tests.app_helpers import post_photo, signed_up, wait_for


def _raw(app_stack, user_id) -> list[int]:
    return [int(v) for v in redis.Redis(port=app_stack.redis_port).lrange(f"feed:{user_id}", 0, -1)]


def test_lost_feed_is_rebuilt_from_followees_and_own_photos(app_stack):
    from app import feed

    reader, me = signed_up("rebuild_reader")
    followed, other = signed_up("rebuild_followed")
    stranger, _ = signed_up("rebuild_stranger")
    assert reader.post(f"/api/users/{other['username']}/follow", content_type="application/json").status_code == 200
    posted = [post_photo(followed, caption=f"f{i}").json()["id"] for i in range(3)]
    posted.append(post_photo(reader, caption="mine").json()["id"])
    post_photo(stranger, caption="not followed")
    wanted = sorted((int(p) for p in posted), reverse=True)
    wait_for(lambda: [p["id"] for p in reader.get("/api/feed").json()["photos"]] and
             sorted(int(p["id"]) for p in reader.get("/api/feed").json()["photos"]) == sorted(wanted))

    redis.Redis(port=app_stack.redis_port).delete(f"feed:{me['id']}")  # as after a Redis restart
    assert [int(p["id"]) for p in reader.get("/api/feed").json()["photos"]] == wanted
    assert _raw(app_stack, me["id"]) == [*wanted, feed.SENTINEL]
    # A page past the first still works on the rebuilt list.
    assert [int(p["id"]) for p in reader.get("/api/feed?offset=1&limit=2").json()["photos"]] == wanted[1:3]


def test_racing_rebuilds_write_once_and_fan_out_does_not_repeat(app_stack):
    from app import feed

    reader, me = signed_up("race_reader")
    followed, other = signed_up("race_followed")
    reader.post(f"/api/users/{other['username']}/follow", content_type="application/json")
    first = int(post_photo(followed).json()["id"])
    key = f"feed:{me['id']}"
    client = redis.Redis(port=app_stack.redis_port)
    client.delete(key)
    with ThreadPoolExecutor(8) as pool:
        wrote = list(pool.map(lambda _: feed.rebuild_feed(int(me["id"])), range(8)))
    assert wrote.count(True) == 1
    assert _raw(app_stack, me["id"]) == [first, feed.SENTINEL]
    feed.push_to_feeds(first, [int(me["id"])])  # a redelivered fan-out
    assert _raw(app_stack, me["id"]) == [first, feed.SENTINEL]


def test_fan_out_skips_missing_feeds_until_read(app_stack):
    from app import feed

    reader, me = signed_up("missing_reader")
    followed, other = signed_up("missing_followed")
    reader.post(f"/api/users/{other['username']}/follow", content_type="application/json")
    photo = int(post_photo(followed).json()["id"])
    wait_for(lambda: followed.get(f"/api/photos/{photo}").json()["thumbnail_url"])
    feed.push_to_feeds(photo, [int(me["id"])])
    assert not redis.Redis(port=app_stack.redis_port).exists(f"feed:{me['id']}")  # never read: not built
    assert [int(p["id"]) for p in reader.get("/api/feed").json()["photos"]] == [photo]
