"""Sentry: errors of a request (through the WSGI entry point) and of a worker task reach a
local Sentry ingest server (tests/fakes/sentry_server.py) with the stack as environment and the
deployed version as release; no DSN → off."""

from __future__ import annotations

import os
import subprocess
import sys

from app.config import load_app_config
from app.sentry import init_app_sentry
from tests.app_helpers import wait_for
from tests.app_services import REPO, _kill_group

SCRIPT = """
import wsgiref.util, sentry_sdk
from app.wsgi import application
environ = {"PATH_INFO": "/api/users/someone", "REQUEST_METHOD": "GET"}
wsgiref.util.setup_testing_defaults(environ)
status = []
application(environ, lambda s, h, *a: status.append(s))
print(status[0])
sentry_sdk.flush(timeout=5)
"""


def test_request_error_is_reported_with_release_and_environment(sentry_server, tmp_path):
    env = {
        **os.environ,
        "DJANGO_SECRET_KEY": "k" * 50,
        "PHOTOSTACK_SHARDMAP": str(tmp_path / "missing-shardmap.json"),  # the request fails → 500
        "PHOTOSTACK_SENTRY_DSN": sentry_server.dsn,
        "PHOTOSTACK_STACK": "staging",
        "PHOTOSTACK_RELEASE": "v1.2.3",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "500 Internal Server Error", done.stderr
    assert sentry_server.events, "no event reached the Sentry server"
    event = sentry_server.events[0]
    assert event["release"] == "v1.2.3" and event["environment"] == "staging"
    assert event["tags"]["component"] == "web"
    assert event["exception"]["values"][-1]["type"] == "FileNotFoundError"
    assert "django" in event["sdk"]["integrations"]


def test_worker_task_error_is_reported(app_stack, sentry_server):
    """A real worker (own queue and node name, so the suite's worker does not take the message)
    reports a failing task through the Celery integration set up in app/celery.py."""
    env = {**os.environ, "PHOTOSTACK_SENTRY_DSN": sentry_server.dsn, "PHOTOSTACK_STACK": "prod", "PHOTOSTACK_RELEASE": "v9"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "app.celery:celery_app", "worker", "-Q", "sentry_probe",
         "-n", "sentry_probe@%h", "--pool", "solo", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-l", "critical"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        from app.celery import celery_app

        # The owner id names logical shard 100, which the 8-shard map does not have: NotFound.
        celery_app.send_task("photostack.fanout_photo", args=(1, 100 << 10), queue="sentry_probe")
        event = wait_for(lambda: sentry_server.events, timeout=30)[0]
    finally:
        _kill_group(worker)
    assert event["environment"] == "prod" and event["release"] == "v9"
    assert event["tags"]["component"] == "worker"
    assert event["exception"]["values"][-1]["type"] == "NotFound"
    assert "celery" in event["sdk"]["integrations"]


def test_no_dsn_means_disabled():
    assert init_app_sentry(load_app_config({"PHOTOSTACK_SHARDMAP": "/x"}), "web", []) is False
