"""Response hardening (issue 10): no framing, nosniff, a Referrer-Policy on every app answer;
behind TLS (the load balancer's X-Forwarded-Proto: https, forwarded by nginx) Secure cookies,
HSTS and a working HTML form post with Origin https://host; on plain HTTP (the one-box) none of
that breaks; sessions in Redis are JSON, never pickle."""

from __future__ import annotations

import re

import redis

from tests.app_helpers import client_address, signed_up

# What nginx forwards for a request that reached the load balancer over TLS.
HTTPS = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_HOST": "photos.example"}


def _csrf_token(response) -> str:
    return re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', response.content).group(1).decode()


def test_every_answer_forbids_framing_and_sniffing(app_stack):
    from django.test import Client

    client = Client()
    for path in ("/login/", "/api/users/nobody_here", "/api/openapi.yaml"):
        response = client.get(path)
        assert response["X-Frame-Options"] == "DENY", path
        assert response["Content-Security-Policy"] == "frame-ancestors 'none'", path
        assert response["X-Content-Type-Options"] == "nosniff", path
        assert response["Referrer-Policy"] == "same-origin", path
        assert "Strict-Transport-Security" not in response, path  # plain HTTP: no HSTS


def test_html_login_behind_tls_sets_secure_cookies_and_hsts(app_stack):
    from django.test import Client

    _, user = signed_up("tlsuser")
    browser = Client(enforce_csrf_checks=True, REMOTE_ADDR=client_address())
    form = browser.get("/login/", **HTTPS)
    assert form["Strict-Transport-Security"].startswith("max-age=")
    assert browser.cookies["csrftoken"]["secure"]
    done = browser.post("/login/", {"username": user["username"], "password": "correct horse",
                                    "csrfmiddlewaretoken": _csrf_token(form)},
                        HTTP_ORIGIN="https://photos.example", **HTTPS)
    assert done.status_code == 302 and done["Location"] == "/", done.content
    assert done.cookies["photostack_session"]["secure"] and done.cookies["photostack_session"]["httponly"]
    # The same origin over plain HTTP is another origin.
    again = browser.post("/login/", {"username": user["username"], "password": "correct horse",
                                     "csrfmiddlewaretoken": _csrf_token(form)}, HTTP_ORIGIN="http://photos.example", **HTTPS)
    assert again.status_code == 403


def test_plain_http_cookies_are_not_secure(app_stack):
    """The one-box serves plain HTTP: a Secure cookie would never come back."""
    from django.test import Client

    browser = Client(enforce_csrf_checks=True, REMOTE_ADDR=client_address())
    form = browser.get("/signup/")
    assert not browser.cookies["csrftoken"]["secure"]
    done = browser.post("/signup/", {"username": f"plain_{client_address().replace('.', '_')}", "password": "long enough",
                                     "csrfmiddlewaretoken": _csrf_token(form)}, HTTP_ORIGIN="http://testserver")
    assert done.status_code == 302, done.content
    assert not done.cookies["photostack_session"]["secure"]
    assert browser.get("/api/me").status_code == 200


def test_sessions_are_signed_json_in_redis(app_stack):
    client, user = signed_up("jsonsession")
    key = client.cookies["photostack_session"].value
    stored = redis.Redis(port=app_stack.redis_port).get(f"photostack:session:{key}")
    assert stored is not None and not stored.startswith(b"\x80")  # pickle protocol 2+ starts with 0x80
    from django.core import signing

    data = signing.loads(stored.decode(), salt="django.contrib.sessions.SessionStore",
                         serializer=signing.JSONSerializer)
    assert data["username"] == user["username"]
    # A value someone else wrote is no session (it is not signed with the app's key).
    redis.Redis(port=app_stack.redis_port).set(f"photostack:session:{key}", signing.dumps(data, key="not-the-key"))
    assert client.get("/api/me").status_code == 401
