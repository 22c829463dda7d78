"""The follow graph: each edge is stored twice, `followers` on the followee's shard (read by the
feed fan-out) and `following` on the follower's shard (read for "whom do I follow").

The two halves are written in two single-shard statements (they may be on different physical
shards); both are idempotent, so a retry after a failure between them completes the edge."""

from __future__ import annotations

from app import counters
from app.shards import router
from app.errors import InvalidInput, NotFound


def follow(follower_id: int, target_id: int) -> bool:
    """Make follower follow target; True if the edge is new."""
    if follower_id == target_id:
        raise InvalidInput("you cannot follow yourself")
    r = router()
    with r.for_object(target_id) as (conn, schema):
        exists, inserted = conn.execute(
            f"WITH t AS (SELECT id FROM {schema}.users WHERE id = %(t)s), "
            f"ins AS (INSERT INTO {schema}.followers (user_id, follower_id) SELECT id, %(f)s FROM t "
            "ON CONFLICT DO NOTHING RETURNING 1) "
            "SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM ins)",
            {"t": target_id, "f": follower_id},
        ).fetchone()
    if not exists:
        raise NotFound(f"user {target_id} does not exist")
    with r.for_object(follower_id) as (conn, schema):
        conn.execute(
            f"INSERT INTO {schema}.following (user_id, target_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (follower_id, target_id),
        )
    if inserted:
        counters.incr(counters.FOLLOWS)
    return bool(inserted)


def unfollow(follower_id: int, target_id: int) -> None:
    """Remove the edge (no-op if absent). Feeds keep what was already pushed."""
    r = router()
    with r.for_object(follower_id) as (conn, schema):
        conn.execute(f"DELETE FROM {schema}.following WHERE user_id = %s AND target_id = %s", (follower_id, target_id))
    with r.for_object(target_id) as (conn, schema):
        conn.execute(f"DELETE FROM {schema}.followers WHERE user_id = %s AND follower_id = %s", (target_id, follower_id))


def is_following(follower_id: int, target_id: int) -> bool:
    """Whether follower follows target."""
    with router().for_object(follower_id) as (conn, schema):
        row = conn.execute(
            f"SELECT 1 FROM {schema}.following WHERE user_id = %s AND target_id = %s", (follower_id, target_id)
        ).fetchone()
    return row is not None


def follow_counts(user_id: int) -> tuple[int, int]:
    """(followers, following) of a user: both tables are on the user's own shard."""
    with router().for_object(user_id) as (conn, schema):
        return conn.execute(
            f"SELECT (SELECT count(*) FROM {schema}.followers WHERE user_id = %(u)s), "
            f"(SELECT count(*) FROM {schema}.following WHERE user_id = %(u)s)",
            {"u": user_id},
        ).fetchone()


def followers_after(user_id: int, after: int, limit: int) -> list[int]:
    """Up to `limit` follower ids greater than `after`, ascending (keyset pages for the fan-out)."""
    with router().for_object(user_id) as (conn, schema):
        rows = conn.execute(
            f"SELECT follower_id FROM {schema}.followers WHERE user_id = %s AND follower_id > %s "
            "ORDER BY follower_id LIMIT %s",
            (user_id, after, limit),
        ).fetchall()
    return [row[0] for row in rows]
