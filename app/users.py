"""Users: sign-up, log-in, lookups. A user lives on the logical shard of its username's hash
(see app/shards.py for why that makes the username index free)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.contrib.auth.hashers import check_password, make_password

from app import counters
from app.errors import InvalidInput
from app.shards import router, username_shard
from infra.sharding import schema_name

USERNAME_RE = re.compile(r"^[a-z0-9_]{3,30}$")
MIN_PASSWORD = 8


class UsernameTaken(Exception):
    """Sign-up with a username that exists (409)."""


@dataclass(frozen=True)
class User:
    """The public part of a user."""

    id: int
    username: str


def normalize_username(raw: str) -> str:
    """The canonical form of a username; InvalidInput if it cannot be one."""
    username = (raw or "").strip().lower()
    if not USERNAME_RE.match(username):
        raise InvalidInput("username must be 3-30 characters of a-z, 0-9 and _")
    return username


def _shard_of_username(username: str) -> tuple[int, str]:
    r = router()
    logical = username_shard(username, r.shard_map.logical_shards)
    return r.shard_map.physical_of(logical), schema_name(logical)


def create_user(raw_username: str, password: str) -> User:
    """Sign a user up; the id comes from the username's shard's next_id()."""
    username = normalize_username(raw_username)
    if len(password or "") < MIN_PASSWORD:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD} characters")
    password_hash = make_password(password)
    physical, schema = _shard_of_username(username)
    with router().connection(physical) as conn:
        row = conn.execute(
            f"INSERT INTO {schema}.users (username, password_hash) VALUES (%s, %s) "
            "ON CONFLICT (username) DO NOTHING RETURNING id",
            (username, password_hash),
        ).fetchone()
    if row is None:
        raise UsernameTaken(username)
    counters.incr(counters.SIGNUPS)
    return User(row[0], username)


def _find(raw_username: str, columns: str) -> tuple[str, tuple | None] | None:
    """(normalized username, its row of `columns` or None); None for a malformed username.
    One query on the username's shard."""
    try:
        username = normalize_username(raw_username)
    except InvalidInput:
        return None
    physical, schema = _shard_of_username(username)
    with router().connection(physical) as conn:
        row = conn.execute(f"SELECT {columns} FROM {schema}.users WHERE username = %s", (username,)).fetchone()
    return username, row


def authenticate(raw_username: str, password: str) -> User | None:
    """The user if the password matches, else None (same answer for unknown users)."""
    found = _find(raw_username, "id, password_hash")
    if found is None:
        return None
    username, row = found
    if row is None:
        make_password(password)  # same work as a real check: no user enumeration by timing
        return None
    return User(row[0], username) if check_password(password, row[1]) else None


def user_by_username(raw_username: str) -> User | None:
    """Look a user up by username (one query on one shard)."""
    found = _find(raw_username, "id")
    if found is None or found[1] is None:
        return None
    return User(found[1][0], found[0])
