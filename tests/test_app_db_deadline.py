"""A shard that does not answer in time (a row lock held elsewhere, pgbouncer paused) costs a
request at most its route's budget (X-Request-Budget, which nginx sends): a 503 with
Retry-After, never a 500 or a hang; a like refused at its deadline while waiting on a lock was
cancelled on the shard, and its retry answers the true count; the app's pools serve again at once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from tests.app_helpers import post_photo, signed_up
from tests.app_services import DB_PASSWORD, DB_USER

QUICK_MS = 1000  # the like and read routes' budget at nginx (roles/nginx nginx_read_timeout_quick)


def from_nginx(budget_ms: int = QUICK_MS) -> dict[str, str]:
    """The headers nginx adds to a request it passes on just now with this route's budget."""
    return {"X-Request-Start": f"t={time.time():.3f}", "X-Request-Budget": str(budget_ms)}


@pytest.fixture
def liked_photo(app_stack):
    """(a logged-in liker, a stored photo's id)."""
    poster, _ = signed_up("dbdeadline")
    posted = post_photo(poster)
    assert posted.status_code == 201, posted.content
    liker, _ = signed_up("dbdeadlineliker")
    return liker, int(posted.json()["id"])


@contextmanager
def row_locked(app_stack, photo_id: int) -> Iterator[None]:
    """The photo's row locked by another session (as a long transaction would) until the block ends."""
    from app.shards import router

    r = router()
    with psycopg.connect(app_stack.direct_dsn(f"shard{r.physical_of(photo_id)}")) as conn:
        conn.execute(f"SELECT 1 FROM {r.schema_of(photo_id)}.photos WHERE id = %s FOR UPDATE", (photo_id,))
        yield
        conn.rollback()


def stored_likes(app_stack, photo_id: int) -> tuple[int, int]:
    """(rows in likes, the photo's like_count), straight from its shard."""
    from app.shards import router

    r = router()
    schema = r.schema_of(photo_id)
    with psycopg.connect(app_stack.direct_dsn(f"shard{r.physical_of(photo_id)}")) as conn:
        rows = conn.execute(f"SELECT count(*) FROM {schema}.likes WHERE photo_id = %s", (photo_id,)).fetchone()[0]
        count = conn.execute(f"SELECT like_count FROM {schema}.photos WHERE id = %s", (photo_id,)).fetchone()[0]
    return rows, count


def like(client, photo_id: int, headers: dict[str, str]):
    return client.post(f"/api/photos/{photo_id}/like", content_type="application/json", headers=headers)


def assert_refused_in_budget(response) -> None:
    assert response.status_code == 503, (response.status_code, response.content)
    assert int(response["Retry-After"]) > 0
    assert "budget" in response.json()["error"]


def test_a_like_on_a_locked_row_is_refused_within_its_budget_and_its_retry_tells_the_truth(app_stack, liked_photo):
    liker, pid = liked_photo
    with row_locked(app_stack, pid):
        assert_refused_in_budget(like(liker, pid, from_nginx()))
    # The statement was cancelled on the shard at the deadline, not left to run once the lock went.
    assert stored_likes(app_stack, pid) == (0, 0)
    retried = like(liker, pid, from_nginx())
    assert retried.status_code == 200, retried.content
    assert stored_likes(app_stack, pid) == (1, 1) and retried.json()["like_count"] == 1


def test_a_paused_pgbouncer_is_a_503_within_the_budget_then_serves_again(app_stack, liked_photo):
    from django.test import Client

    liker, pid = liked_photo
    with psycopg.connect(host="127.0.0.1", port=app_stack.bouncer_port, dbname="pgbouncer", user=DB_USER,
                         password=DB_PASSWORD, autocommit=True, prepare_threshold=None) as admin:
        admin.execute("PAUSE")
        try:
            assert_refused_in_budget(like(liker, pid, from_nginx()))
            assert_refused_in_budget(liker.get(f"/api/users/{liker.get('/api/me').json()['username']}",
                                               headers=from_nginx()))
            # The whole app's check (Pingdom's) fails in its own budget too, naming the shards:
            # a shard's query cut at the deadline, or no connection lent in the pool's wait.
            health = Client().get("/health")
            assert health.status_code == 503
            checks = health.json()["checks"]
            assert checks.pop("redis") == "ok"
            assert checks and set(checks.values()) <= {"DeadlineExceeded", "PoolTimeout"}, checks
        finally:
            admin.execute("RESUME")
    answer = like(liker, pid, from_nginx())
    assert answer.status_code == 200 and answer.json()["like_count"] == stored_likes(app_stack, pid)[1] == 1


def test_a_hung_pgbouncer_is_a_503_within_the_budget(app_stack, liked_photo):
    """pgbouncer alive but silent (SIGSTOP): the cancel cannot be sent, the statement is cut."""
    liker, pid = liked_photo
    bouncer = app_stack.procs["pgbouncer"]
    os.killpg(bouncer.pid, signal.SIGSTOP)
    try:
        assert_refused_in_budget(like(liker, pid, from_nginx()))
    finally:
        os.killpg(bouncer.pid, signal.SIGCONT)
    answer = like(liker, pid, from_nginx())
    assert answer.status_code == 200 and answer.json()["like_count"] == stored_likes(app_stack, pid)[1] == 1


def test_a_request_already_past_its_budget_asks_no_shard(app_stack, liked_photo):
    """A request whose budget is spent before its first query (here: by a long route budget's
    stamp from long ago, as nginx's retry of a route without a quick budget could bring) is
    refused before asking; one with no budget from nginx has no deadline."""
    from app import deadline
    from app.shards import router

    liker, pid = liked_photo
    with deadline.request_deadline(time.monotonic() - 0.001):
        with pytest.raises(deadline.DeadlineExceeded, match="before the database was asked"):
            with router().for_object(pid):
                pass
    with row_locked(app_stack, pid):
        with deadline.request_deadline(time.monotonic() + 0.3):
            with pytest.raises(deadline.DeadlineExceeded, match="budget"):
                with router().for_object(pid) as (conn, schema):
                    conn.execute(f"UPDATE {schema}.photos SET caption = caption WHERE id = %s", (pid,))
    assert stored_likes(app_stack, pid) == (0, 0)
    assert like(liker, pid, {}).status_code == 200  # no budget header: served, no deadline
