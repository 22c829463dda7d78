"""Sentry events from plain Python reach a local DSN with the right environment and release."""

from __future__ import annotations

import sentry_sdk

from infra.config import load_stack_config
from monitoring.integrations.sentry import DSN_ENV, RELEASE_ENV, init_for_stack, init_sentry, mark_deploy


def _close() -> None:
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)  # inactive for the next test (init() with no DSN is still active)


def test_no_dsn_is_a_no_op():
    assert init_sentry(None, "onebox", "1.0") is False
    assert not sentry_sdk.get_client().is_active()
    assert mark_deploy("1.0", "onebox") is None


def test_an_error_arrives_with_environment_release_and_component(sentry_server):
    try:
        assert init_sentry(sentry_server.dsn, "staging", "photostack@1.2.3", component="ops", default_integrations=False)
        try:
            1 / 0
        except ZeroDivisionError:
            event_id = sentry_sdk.capture_exception()
        sentry_sdk.flush(timeout=5)
    finally:
        _close()

    [event] = sentry_server.events
    assert event["event_id"] == event_id
    assert event["environment"] == "staging"
    assert event["release"] == "photostack@1.2.3"
    assert event["tags"]["component"] == "ops"
    assert event["exception"]["values"][0]["type"] == "ZeroDivisionError"


def test_a_deploy_is_recorded_with_the_deployed_release(sentry_server):
    try:
        init_sentry(sentry_server.dsn, "prod", "ops@0.1.0", default_integrations=False)
        event_id = mark_deploy("photostack@2.0.0", "prod")
    finally:
        _close()

    [event] = sentry_server.events
    assert event["event_id"] == event_id
    assert event["release"] == "photostack@2.0.0" and event["environment"] == "prod"
    assert event["tags"]["deploy"] == "photostack@2.0.0"
    assert event["message"] == "Deployed photostack@2.0.0 to prod"


def test_init_for_stack_uses_the_stack_environment(sentry_server, state_root, monkeypatch):
    monkeypatch.setenv(DSN_ENV, sentry_server.dsn)
    monkeypatch.setenv(RELEASE_ENV, "photostack@abc123")
    try:
        assert init_for_stack("onebox", load_stack_config("onebox"), "worker")
        sentry_sdk.capture_message("hello")
        sentry_sdk.flush(timeout=5)
    finally:
        _close()
    [event] = sentry_server.events
    assert (event["environment"], event["release"], event["tags"]["component"]) == ("onebox", "photostack@abc123", "worker")


def test_ops_cli_reports_a_crash_to_sentry_and_prints_one_line(sentry_server, tmp_path) -> None:
    """An unexpected failure of an `ops` command: one line for the operator, the event to Sentry."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as probe:  # a port nothing listens on: the EC2 API is unreachable
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    env = {
        **os.environ,
        "PHOTOSTACK_SENTRY_DSN": sentry_server.dsn,
        "PHOTOSTACK_STATE_DIR": str(tmp_path),
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{dead_port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_MAX_ATTEMPTS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "ops", "--stack", "staging", "status"],
        capture_output=True, text=True, env=env, timeout=120, cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    events = sentry_server.items("event")
    assert events, "no event reached the local Sentry DSN"
    assert events[-1]["environment"] == "staging"
    assert events[-1]["tags"]["component"] == "ops"
