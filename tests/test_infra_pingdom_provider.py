"""The Pingdom dynamic provider's diff: what changes the check in place and what replaces it."""

from __future__ import annotations

from infra.monitoring import PingdomCheckProvider

OLD = {"name": "photostack a.example.com /health", "host": "a.example.com", "path": "/health", "resolution": 1,
       "api_url": "https://api.pingdom.com/api/3.1", "token": "t"}


def test_unchanged_check_is_left_alone():
    assert PingdomCheckProvider().diff("1", OLD, dict(OLD)).changes is False


def test_new_interval_or_token_updates_in_place():
    for change in ({"resolution": 5}, {"token": "t2"}):
        result = PingdomCheckProvider().diff("1", OLD, {**OLD, **change})
        assert result.changes is True and result.replaces == []


def test_new_name_replaces_the_check():
    result = PingdomCheckProvider().diff("1", OLD, {**OLD, "name": "photostack b.example.com /health"})
    assert result.changes is True and result.replaces == ["name"]
