"""The Pingdom 3.1 client against a local HTTPS server speaking the 3.1 contract."""

from __future__ import annotations

import time

import pytest

from infra.pingdom import PingdomClient, PingdomError
from tests.conftest import PINGDOM_TOKEN


@pytest.fixture
def client(pingdom_server, test_certificates) -> PingdomClient:
    return PingdomClient(PINGDOM_TOKEN, base_url=pingdom_server.api_url, rate_limit_retries=2,
                         rate_limit_wait_s=0.01, ca_bundle=str(test_certificates.ca_bundle))


def test_sync_creates_an_https_health_check_with_the_pagerduty_integration(client, pingdom_server):
    result = client.sync_check("photostack-prod /health", "photos.example.com", "/health", "ok",
                               resolution=1, integration_ids=(4711,))

    assert result.action == "created"
    stored = pingdom_server.checks[result.check_id]
    assert stored["hostname"] == "photos.example.com"
    assert stored["resolution"] == 1
    assert stored["type"]["http"] == {"url": "/health", "encryption": True, "shouldcontain": "ok"}
    assert stored["integrationids"] == [4711]


def test_sync_is_idempotent_by_name_and_updates_only_what_differs(client, pingdom_server):
    first = client.sync_check("site", "photos.example.com", integration_ids=(1,))
    again = client.sync_check("site", "photos.example.com", integration_ids=(1,))
    writes = [r for r in pingdom_server.requests if r[0] in ("POST", "PUT")]
    changed = client.sync_check("site", "photos.example.com", shouldcontain="healthy", integration_ids=(1, 2))

    assert (first.action, again.action, changed.action) == ("created", "unchanged", "updated")
    assert first.check_id == again.check_id == changed.check_id
    assert len(writes) == 1
    assert len(pingdom_server.checks) == 1
    stored = pingdom_server.checks[first.check_id]
    assert stored["type"]["http"]["shouldcontain"] == "healthy" and stored["integrationids"] == [1, 2]


def test_delete_by_name(client, pingdom_server):
    client.sync_check("site", "photos.example.com")
    assert client.delete_check_named("site") is True
    assert client.delete_check_named("site") is False
    assert pingdom_server.checks == {}


def test_errors_carry_status_and_pingdoms_message(client, pingdom_server, test_certificates):
    with pytest.raises(PingdomError) as error:
        client.create_check({"name": "x", "host": "h", "type": "http", "resolution": 7})
    assert error.value.status == 400 and "Invalid resolution: 7" in str(error.value)

    with pytest.raises(PingdomError) as missing:
        client.check(1)
    assert missing.value.status == 404

    bad_token = PingdomClient("wrong", base_url=pingdom_server.api_url, ca_bundle=str(test_certificates.ca_bundle))
    with pytest.raises(PingdomError) as unauthorised:
        bad_token.checks()
    assert unauthorised.value.status == 401 and "token" in str(unauthorised.value)
    assert "wrong" not in str(unauthorised.value)


def test_429_is_retried_a_bounded_number_of_times(client, pingdom_server):
    pingdom_server.throttle_next(2)
    started = time.monotonic()
    assert client.checks() == []
    assert len(pingdom_server.requests) == 3
    assert time.monotonic() - started >= 0.03  # it waited between attempts (0.01 s, then 0.02 s)


def test_persistent_429_surfaces_the_rate_limit_headers(client, pingdom_server):
    pingdom_server.throttle_next(10)
    with pytest.raises(PingdomError) as error:
        client.checks()
    assert error.value.status == 429
    assert error.value.rate_limits["Req-Limit-Short"] == "Remaining: 0 Time until reset: 3589"
    assert "Req-Limit-Long" in str(error.value)
    assert len(pingdom_server.requests) == 3


def test_unreachable_is_status_zero(pingdom_server, test_certificates):
    client = PingdomClient(PINGDOM_TOKEN, base_url=pingdom_server.api_url, timeout_s=2,
                           ca_bundle=str(test_certificates.ca_bundle))
    pingdom_server.stop()
    with pytest.raises(PingdomError) as error:
        client.checks()
    assert error.value.status == 0 and "unreachable" in str(error.value)
