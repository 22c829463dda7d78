"""Who is logged in (the user id and name in the Django session, app/sessions.py), and how often
a client may try: log-ins and sign-ups each cost a PBKDF2 hash, so they are throttled before
it runs (app/ratelimit.py, limits from app/config.py)."""

from __future__ import annotations

import ipaddress

from django.http import HttpRequest

from app import ratelimit
from app.config import app_config
from app.errors import InvalidInput
from app.security import client_ip
from app.users import User, normalize_username

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


def _address_key(request: HttpRequest) -> str:
    """The client's address as a limiter key; an IPv6 client is its /64 (one subscriber's
    network: addresses inside it cost an attacker nothing)."""
    address = client_ip(request)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


def login_wait(request: HttpRequest, raw_username: str) -> int | None:
    """Count a log-in attempt per client address and per username; the seconds to wait
    (Retry-After) when either is over its limit, else None. The per-username limit stops
    guessing one password from many addresses; its price is that a guesser can keep that
    account's log-ins throttled (open sessions are unaffected)."""
    config = app_config()
    wait = ratelimit.hit(f"login:ip:{_address_key(request)}", config.login_rate_ip)
    if wait is not None:
        return wait
    try:
        username = normalize_username(raw_username)
    except InvalidInput:
        return None  # no such user can exist: authenticate() answers without hashing
    return ratelimit.hit(f"login:user:{username}", config.login_rate_user)


def signup_wait(request: HttpRequest) -> int | None:
    """Count a sign-up per client address; the seconds to wait when over the limit, else None."""
    return ratelimit.hit(f"signup:ip:{_address_key(request)}", app_config().signup_rate_ip)
