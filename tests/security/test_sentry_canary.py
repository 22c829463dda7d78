"""Sentry events carry no secrets (issue 10): a failing log-in request whose password, nested
token, Authorization header and cookie are a canary reaches the local Sentry ingest server
(tests/fakes/sentry_server.py) without the canary anywhere in the envelope."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from monitoring.integrations.sentry import FILTERED, scrub
from tests.app_services import REPO

CANARY = "canary-Pa55w0rd-7f3e9c"

SCRIPT = """
import io, json, os, wsgiref.util, sentry_sdk
from app.wsgi import application
canary = os.environ["CANARY"]
body = json.dumps({"username": "someone", "password": canary,
                   "profile": {"devices": [{"push_token": canary, "name": "phone"}]}}).encode()
environ = {"PATH_INFO": "/api/login", "REQUEST_METHOD": "POST", "CONTENT_TYPE": "application/json",
           "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
           "HTTP_AUTHORIZATION": "Bearer " + canary, "HTTP_COOKIE": "photostack_session=" + canary,
           "HTTP_X_API_TOKEN": canary}
wsgiref.util.setup_testing_defaults(environ)
status = []
application(environ, lambda s, h, *a: status.append(s))
print(status[0])
sentry_sdk.flush(timeout=5)
"""


def test_a_canary_password_never_reaches_sentry(sentry_server, tmp_path):
    env = {
        **os.environ,
        "CANARY": CANARY,
        "DJANGO_SECRET_KEY": "k" * 50,
        "PHOTOSTACK_SHARDMAP": str(tmp_path / "missing-shardmap.json"),  # the log-in fails → 500
        "PHOTOSTACK_REDIS_URL": "redis://127.0.0.1:9/0",  # nothing listens: the limiter fails open
        "PHOTOSTACK_SENTRY_DSN": sentry_server.dsn,
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "500 Internal Server Error", done.stderr
    event = sentry_server.events[0]
    assert event["request"]["data"]["username"] == "someone"  # the body was sent, scrubbed
    assert event["exception"]["values"][-1]["type"] == "FileNotFoundError"
    raw = b"".join(payload for _, items in sentry_server.envelopes for _, payload in items)
    assert CANARY.encode() not in raw
    assert not any("vars" in frame for value in event["exception"]["values"]
                   for frame in value["stacktrace"]["frames"])


def test_scrub_reaches_any_depth():
    event = {"extra": {"config": {"dbPassword": "x", "hosts": [{"name": "a", "AUTH_TOKEN": "y"}]}},
             "request": {"headers": {"Authorization": "Bearer z", "Accept": "*/*"}}}
    assert scrub(event) == {"extra": {"config": {"dbPassword": FILTERED, "hosts": [{"name": "a", "AUTH_TOKEN": FILTERED}]}},
                            "request": {"headers": {"Authorization": FILTERED, "Accept": "*/*"}}}
    assert json.dumps(event).count("Bearer z") == 1  # the caller's event is left as it was
