"""Log-in and sign-up throttling (issue 10): per client address and per username, 429 with
Retry-After before any password hashing, on the app's real Redis; the client's address is
nginx's X-Real-IP only when the peer is a trusted proxy."""

from __future__ import annotations

import redis

from tests.app_helpers import client_address, signed_up, unique_name


def _login(client, username: str, password: str, **headers):
    return client.post("/api/login", {"username": username, "password": password},
                       content_type="application/json", **headers)


def test_thirty_failed_logins_are_throttled_and_another_address_is_not(app_stack):
    from django.test import Client

    victim = signed_up("victim")[1]["username"]
    guesser = Client()  # through nginx: the peer is loopback, the client is in X-Real-IP
    answers = [_login(guesser, unique_name("nobody") if n % 2 else victim, f"guess {n}", HTTP_X_REAL_IP="203.0.113.7")
               for n in range(30)]
    codes = [a.status_code for a in answers]
    assert set(codes[:10]) == {401}, codes  # the first attempts are checked normally
    assert codes.count(429) >= 10, codes
    throttled = next(a for a in answers if a.status_code == 429)
    assert 1 <= int(throttled["Retry-After"]) <= 60
    # Another client is not throttled: its right password logs in.
    other, other_user = signed_up("other")
    fresh = _login(Client(), other_user["username"], "correct horse", HTTP_X_REAL_IP="203.0.113.8")
    assert fresh.status_code == 200, fresh.content


def test_one_username_is_throttled_across_addresses(app_stack):
    from django.test import Client

    victim = signed_up("target")[1]["username"]
    codes = [_login(Client(REMOTE_ADDR=client_address()), victim, f"guess {n}").status_code for n in range(15)]
    assert codes[:10] == [401] * 10 and set(codes[10:]) == {429}, codes
    # Even the right password waits: the check comes before the hash.
    assert _login(Client(REMOTE_ADDR=client_address()), victim, "correct horse").status_code == 429


def test_sign_ups_are_throttled_per_address(app_stack):
    from django.test import Client

    client = Client(REMOTE_ADDR=client_address())
    codes = [client.post("/api/signup", {"username": unique_name("spam"), "password": "long enough"},
                         content_type="application/json").status_code for _ in range(12)]
    assert codes[:10] == [201] * 10 and set(codes[10:]) == {429}, codes
    # The HTML form is throttled too, with the page and Retry-After.
    page = client.post("/signup/", {"username": unique_name("spam"), "password": "long enough"})
    assert page.status_code == 429 and int(page["Retry-After"]) >= 1 and b"Too many attempts" in page.content


def test_x_real_ip_from_an_untrusted_peer_is_ignored(app_stack):
    from django.test import Client

    # A client on the internet (not nginx) claiming a fresh address every time stays one client.
    client = Client(REMOTE_ADDR="198.51.100.9")
    codes = [_login(client, unique_name("nobody"), "guess", HTTP_X_REAL_IP=f"192.0.2.{n}").status_code
             for n in range(1, 23)]
    assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}, codes


def test_the_limiter_fails_open_when_redis_refuses(app_stack):
    """The limiter's store failing must not lock everyone out."""
    from app import ratelimit
    from app.config import Rate

    r = redis.Redis(port=app_stack.redis_port)
    r.config_set("requirepass", "locked-out")
    r.client_kill_filter(_type="normal", skipme=False)  # the app's pooled connections must log in again
    try:
        assert ratelimit.hit("test:down", Rate(1, 60)) is None
        assert ratelimit.hit("test:down", Rate(1, 60)) is None
    finally:
        redis.Redis(port=app_stack.redis_port, password="locked-out").config_set("requirepass", "")
    assert ratelimit.hit("test:up", Rate(1, 60)) is None
    assert ratelimit.hit("test:up", Rate(1, 60)) is not None
