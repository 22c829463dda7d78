"""Cross-site request forgery (issue 10): a cross-origin form-encoded POST to log-in, sign-up,
like, comment and follow is refused, with and without a victim's session; the normal flows
(JSON API, multipart upload, HTML forms with Django's token) still work."""

from __future__ import annotations

import json

from tests.app_helpers import client_address, post_photo, signed_up, unique_name

EVIL = "http://evil.example"


def test_cross_origin_form_posts_are_refused(app_stack):
    from django.test import Client

    victim, victim_user = signed_up("csrfvictim")
    poster, poster_user = signed_up("csrfposter")
    posted = post_photo(poster)
    assert posted.status_code == 201, posted.content
    photo = posted.json()
    attacker = Client(REMOTE_ADDR=client_address())
    form = {"username": victim_user["username"], "password": "correct horse"}
    # Login CSRF and forged sign-ups: no cookie needed, so SameSite cannot help.
    assert attacker.post("/api/login", form, HTTP_ORIGIN=EVIL).status_code == 403
    assert attacker.post("/api/signup", {"username": unique_name("forged"), "password": "long enough"},
                         HTTP_ORIGIN=EVIL).status_code == 403
    assert attacker.post("/login/", form, HTTP_ORIGIN=EVIL).status_code == 403
    assert "photostack_session" not in attacker.cookies
    # With the victim's cookie (a same-site page, where Lax still sends it).
    for path, body in ((f"/api/photos/{photo['id']}/like", {}),
                       (f"/api/photos/{photo['id']}/comments", {"body": "forged"}),
                       (f"/api/users/{poster_user['username']}/follow", {})):
        answer = victim.post(path, body, HTTP_ORIGIN=EVIL, content_type="application/x-www-form-urlencoded")
        assert answer.status_code == 403, (path, answer.content)
    # Even JSON is refused cross-origin (a CORS preflight is the browser's job; this is ours).
    assert victim.post(f"/api/photos/{photo['id']}/like", HTTP_ORIGIN=EVIL,
                       content_type="application/json").status_code == 403
    assert victim.post(f"/api/photos/{photo['id']}/like", HTTP_ORIGIN="null",
                       content_type="application/json").status_code == 403
    fresh = Client().get(f"/api/photos/{photo['id']}").json()
    assert fresh["like_count"] == 0 and fresh["comment_count"] == 0
    assert Client().get(f"/api/users/{poster_user['username']}").json()["followers"] == 0


def test_api_writes_must_be_json_even_without_an_origin(app_stack):
    """An old browser's form post carries no Origin: the content type gives it away."""
    victim, _ = signed_up("csrfold")
    poster, poster_user = signed_up("csrfold_poster")
    photo = post_photo(poster).json()
    for content_type in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"):
        answer = victim.post(f"/api/photos/{photo['id']}/comments", "body=forged", content_type=content_type)
        assert answer.status_code == 415, (content_type, answer.content)
    # A form with no fields: an empty body, but still a form's Content-Type.
    assert victim.generic("POST", f"/api/users/{poster_user['username']}/follow",
                          CONTENT_TYPE="application/x-www-form-urlencoded").status_code == 415
    # The upload is the one multipart write; JSON there is refused.
    assert victim.post("/api/photos", {"caption": "x"}, content_type="application/json").status_code == 415


def test_same_origin_and_originless_clients_still_work(app_stack):
    from django.test import Client

    client, user = signed_up("csrfok")
    same = "http://testserver"  # the test client's host
    photo = post_photo(client).json()
    assert client.post(f"/api/photos/{photo['id']}/comments", json.dumps({"body": "mine"}),
                       content_type="application/json", HTTP_ORIGIN=same).status_code == 201
    # curl-style: no Origin, no body, no Content-Type (a like, a follow, a log-out).
    assert client.generic("POST", f"/api/photos/{photo['id']}/like").status_code == 200
    assert client.generic("DELETE", f"/api/photos/{photo['id']}/like", HTTP_ORIGIN=same).status_code == 200
    upload = post_photo(client)
    assert upload.status_code == 201
    fresh = Client(REMOTE_ADDR=client_address())
    assert fresh.post("/api/login", {"username": user["username"], "password": "correct horse"},
                      content_type="application/json", HTTP_ORIGIN=same).status_code == 200
    assert fresh.generic("POST", "/api/logout", HTTP_ORIGIN=same).status_code == 204
