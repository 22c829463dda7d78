"""The HTML UI end to end (forms, CSRF) and /health answering 503 when a dependency is down."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tests.app_helpers import client_address, jpeg, unique_name, wait_for
from tests.app_services import REPO, free_ports


def csrf_token(response) -> str:
    return re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', response.content).group(1).decode()


def test_html_signup_upload_follow_and_feed(app_stack):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client

    # Each user from an address of its own, as real users (sign-ups are limited per address).
    poster, fan = (Client(enforce_csrf_checks=True, REMOTE_ADDR=client_address()) for _ in range(2))
    poster_name, fan_name = unique_name("hposter"), unique_name("hfan")
    for client, name in ((poster, poster_name), (fan, fan_name)):
        form = client.get("/signup/")
        done = client.post("/signup/", {"username": name, "password": "long enough", "csrfmiddlewaretoken": csrf_token(form)})
        assert done.status_code == 302 and done["Location"] == "/"

    page = fan.get(f"/u/{poster_name}/")
    assert b">Follow<" in page.content
    assert fan.post(f"/u/{poster_name}/follow/", {"csrfmiddlewaretoken": csrf_token(page)}).status_code == 302
    assert b">Unfollow<" in fan.get(f"/u/{poster_name}/").content

    home = poster.get("/")
    uploaded = poster.post("/upload/", {"image": SimpleUploadedFile("a.jpg", jpeg()), "caption": "html caption",
                                        "csrfmiddlewaretoken": csrf_token(home)})
    assert uploaded.status_code == 302 and uploaded["Location"] == f"/u/{poster_name}/"
    assert b"html caption" in poster.get(f"/u/{poster_name}/").content

    # The follower's home page shows it, with the thumbnail once the worker made it.
    wait_for(lambda: b"/media/t/" in fan.get("/").content)


def test_html_forms_refuse_posts_without_csrf_token(app_stack):
    from django.test import Client

    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=client_address())
    response = client.post("/signup/", {"username": unique_name("csrf"), "password": "long enough"})
    assert response.status_code == 403


def run_health(env: dict[str, str]) -> tuple[int, dict]:
    """GET /health through the app's URL routing and view, in a fresh process: (status, JSON body)."""
    script = ("import json, django; django.setup(); from django.test import Client; "
              "r = Client().get('/health'); print(json.dumps([r.status_code, r.json()]))")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    status, body = json.loads(done.stdout)
    return status, body


def test_health_answers_503_naming_what_is_down(app_stack):
    """The load balancer's contract: 200 when every dependency answers, 503 naming the one that does not."""
    dead = free_ports(1)[0]
    env = {**os.environ, **{k: v for k, v in app_stack.env.items() if not k.startswith("_")}}
    assert run_health(env) == (200, {"status": "ok", "checks": {"shard0": "ok", "shard1": "ok", "redis": "ok"}})
    assert run_health({**env, "PHOTOSTACK_REDIS_URL": f"redis://127.0.0.1:{dead}/0"}) == (503, {
        "status": "fail", "checks": {"shard0": "ok", "shard1": "ok", "redis": "ConnectionError"},
    })
    assert run_health({**env, "PHOTOSTACK_DB_PORT": str(dead)}) == (503, {
        "status": "fail", "checks": {"shard0": "PoolTimeout", "shard1": "PoolTimeout", "redis": "ok"},
    })
