"""Sentry events from plain Python reach a local DSN with the right environment and release."""

from __future__ import annotations

import sentry_sdk

from infra.config import load_stack_config
from monitoring.sentry import DSN_ENV, RELEASE_ENV, init_for_stack, init_sentry, mark_deploy


def _close() -> None:
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # back to an inactive client for the next test


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
