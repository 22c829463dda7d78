"""A dependency that is down or hung is a quick 503 with Retry-After, never a hang or a 500, and
the request's work is either done (and answered 200) or not done at all."""

from __future__ import annotations

import os
import signal

import pytest

from tests.app_helpers import jpeg, post_photo, signed_up, wait_for
from tests.app_services import _kill_group, start_pgbouncer, start_redis, wait_port


def session_of(leader: int) -> list[int]:
    """Every process in the session `leader` started (RabbitMQ's scripts, beam and its helpers
    need not share one process group)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == leader:
                    found.append(int(entry))
            except ProcessLookupError:
                pass
    return found


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def assert_refused(response) -> None:
    """A 503 the client is told to retry."""
    assert response.status_code == 503, (response.status_code, response.content)
    assert int(response["Retry-After"]) > 0
    assert "error" in response.json()


@pytest.fixture
def liker_and_photo(app_stack):
    """(a logged-in liker, a stored photo id)."""
    poster, _ = signed_up("depdown")
    posted = post_photo(poster)
    assert posted.status_code == 201, posted.content
    photo = posted.json()
    liker, _ = signed_up("depdownliker")
    return liker, int(photo["id"])


def test_pgbouncer_down_refuses_likes_with_503_then_recovers(app_stack, liker_and_photo):
    from django.test import Client

    liker, pid = liker_and_photo
    _kill_group(app_stack.procs["pgbouncer"])
    try:
        # The pooled connections die with it (the first answer), then the pool cannot lend one
        # within its bounded wait (the second): both are refusals, neither a 500.
        assert_refused(liker.post(f"/api/photos/{pid}/like", content_type="application/json"))
        assert_refused(liker.post(f"/api/photos/{pid}/like", content_type="application/json"))
        assert_refused(liker.get(f"/api/photos/{pid}"))
        # The whole app's check says so; the node's own check (the load balancer's, the health
        # watcher's) does not: the shards are down for every node alike, taking every node out
        # would turn this into a whole outage.
        assert Client().get("/health").status_code == 503
        assert Client().get("/health/node").status_code == 200
    finally:
        start_pgbouncer(app_stack)
    # Every shard's pool lends working connections again (health checks each one) …
    wait_for(lambda: Client().get("/health").status_code == 200)
    # … and the like, refused before, is stored once when the client retries it.
    answer = liker.post(f"/api/photos/{pid}/like", content_type="application/json")
    assert answer.status_code == 200 and answer.json()["like_count"] == 1


def test_redis_down_refuses_feed_reads_with_503_not_401(app_stack):
    reader, _ = signed_up("redisdown")
    assert reader.get("/api/feed").status_code == 200
    _kill_group(app_stack.procs["redis"])
    try:
        # The session cannot be read: that is "try again", not "log in first".
        assert_refused(reader.get("/api/feed"))
        assert_refused(reader.get("/api/me"))
    finally:
        start_redis(app_stack)
        wait_port(app_stack.redis_port, app_stack.procs["redis"], 10, "redis")
    # Redis keeps nothing on disk here: the session is gone, and the client is told so.
    assert reader.get("/api/me").status_code == 401


def test_rabbitmq_frozen_refuses_a_post_and_keeps_nothing(app_stack):
    from app import photos

    poster, user = signed_up("mqfrozen")
    kept = post_photo(poster)  # the app's publishing connection is open now …
    assert kept.status_code == 201, kept.content
    broker = session_of(app_stack.procs["rabbitmq"].pid)
    signal_all(broker, signal.SIGSTOP)  # alive, accepting connections, answering nothing
    try:
        answer = post_photo(poster, jpeg(color="blue"))
    finally:
        signal_all(broker, signal.SIGCONT)
    assert_refused(answer)  # … and the broker's confirm never comes: the wait for it is bounded
    assert [p["id"] for p in photos.user_photos(int(user["id"]))] == [int(kept.json()["id"])]
