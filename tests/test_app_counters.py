"""Monitoring counters: plain Redis integers under documented keys, read as Munin would."""

from __future__ import annotations

import redis

from tests.app_helpers import post_photo, signed_up, wait_for

KEYS = ("signups", "photos_posted", "likes", "comments", "follows", "thumbnails", "feed_fanout_writes")


def totals(stack) -> dict[str, int]:
    client = redis.Redis(port=stack.redis_port)
    values = client.mget([f"photostack:counter:{k}" for k in KEYS])
    return {k: int(v or 0) for k, v in zip(KEYS, values)}


def test_events_increment_their_counters(app_stack):
    before = totals(app_stack)
    poster, poster_user = signed_up("counted")
    fan, _ = signed_up("counter_fan")
    fan.post(f"/api/users/{poster_user['username']}/follow", content_type="application/json")
    photo = post_photo(poster).json()
    fan.post(f"/api/photos/{photo['id']}/like", content_type="application/json")
    fan.post(f"/api/photos/{photo['id']}/like", content_type="application/json")  # a repeat is not a new like
    fan.post(f"/api/photos/{photo['id']}/comments", {"body": "wow"}, content_type="application/json")
    wait_for(lambda: totals(app_stack)["thumbnails"] > before["thumbnails"]
             and totals(app_stack)["feed_fanout_writes"] > before["feed_fanout_writes"])
    after = totals(app_stack)
    delta = {k: after[k] - before[k] for k in KEYS}
    # Other tests' workers may still be finishing thumbnails/fan-outs: those two are lower bounds.
    assert {k: delta[k] for k in ("signups", "photos_posted", "likes", "comments", "follows")} == {
        "signups": 2, "photos_posted": 1, "likes": 1, "comments": 1, "follows": 1,
    }
    assert delta["thumbnails"] >= 1 and delta["feed_fanout_writes"] >= 1


def test_documented_keys_match_the_module():
    from app import counters

    assert tuple(counters.key(n) for n in counters.ALL) == tuple(f"photostack:counter:{k}" for k in KEYS)
    for name in counters.ALL:
        assert f"`{counters.key(name)}`" in counters.__doc__
