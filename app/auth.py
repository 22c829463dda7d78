"""Who is logged in: the user id and name in the (Redis-cached) Django session."""

from __future__ import annotations

from django.http import HttpRequest

from app.users import User

_UID = "uid"
_NAME = "username"


def log_in(request: HttpRequest, user: User) -> None:
    """Start a fresh session for a user (a new session key defeats session fixation)."""
    request.session.cycle_key()
    request.session[_UID] = user.id
    request.session[_NAME] = user.username


def log_out(request: HttpRequest) -> None:
    """End the session."""
    request.session.flush()


def current_user(request: HttpRequest) -> User | None:
    """The logged-in user, or None."""
    uid = request.session.get(_UID)
    return User(uid, request.session[_NAME]) if uid is not None else None
