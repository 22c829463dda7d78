"""The Pingdom dynamic provider's diff: what changes the check in place and what replaces it."""

from __future__ import annotations

from infra.monitoring import PingdomCheckProvider
from tests.conftest import PINGDOM_TOKEN

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


# --- read: what `pulumi refresh` sees, against the local Pingdom API -----------------------------

def _props(pingdom_server) -> dict:
    return {**OLD, "api_url": pingdom_server.api_url, "token": PINGDOM_TOKEN}


def test_read_sees_a_check_edited_by_hand_then_diff_puts_it_back(pingdom_server, test_certificates, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(test_certificates.ca_bundle))  # the fake's CA, as a proxy's would be
    props = _props(pingdom_server)
    provider = PingdomCheckProvider()
    check_id = provider.create(props).id
    pingdom_server.checks[int(check_id)]["resolution"] = 15  # someone changed it in Pingdom's UI
    read = provider.read(check_id, props)
    assert read.id == check_id and read.outs["resolution"] == 15 and read.outs["host"] == "a.example.com"
    assert read.outs["token"] == PINGDOM_TOKEN  # what Pingdom does not return is kept
    result = provider.diff(check_id, read.outs, props)
    assert result.changes is True and result.replaces == []


def test_the_check_pages_through_the_pagerduty_integration_and_refresh_sees_it_removed(
        pingdom_server, test_certificates, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(test_certificates.ca_bundle))
    props = {**_props(pingdom_server), "integration_ids": [4711]}
    provider = PingdomCheckProvider()
    check_id = provider.create(props).id
    assert pingdom_server.checks[int(check_id)]["integrationids"] == [4711]
    pingdom_server.checks[int(check_id)]["integrationids"] = []  # unticked in Pingdom's UI
    read = provider.read(check_id, props)
    assert read.outs["integration_ids"] == []
    result = provider.diff(check_id, read.outs, props)
    assert result.changes is True and result.replaces == []
    provider.update(check_id, read.outs, props)
    assert pingdom_server.checks[int(check_id)]["integrationids"] == [4711]
    # The engine hands numbers back as floats; the same ids are no change.
    assert provider.diff(check_id, {**props, "integration_ids": [4711.0]}, props).changes is False


def test_a_check_stored_before_integrations_were_a_property_is_unchanged_without_any():
    assert PingdomCheckProvider().diff("1", OLD, {**OLD, "integration_ids": []}).changes is False
    assert PingdomCheckProvider().diff("1", OLD, {**OLD, "integration_ids": [7]}).changes is True


def test_prods_check_carries_the_configured_pagerduty_integration():
    from infra.config import load_stack_config
    from tests._infra_plans import plan_of

    (check,) = plan_of("prod").of_type("pulumi-python:dynamic:Resource")
    configured = load_stack_config("prod").monitoring.pingdom_pagerduty_integration_id
    assert configured is not None and check.inputs["integration_ids"] == [configured]


def test_read_of_a_check_deleted_by_hand_says_it_is_gone(pingdom_server, test_certificates, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(test_certificates.ca_bundle))
    props = _props(pingdom_server)
    provider = PingdomCheckProvider()
    check_id = provider.create(props).id
    pingdom_server.checks.clear()
    assert provider.read(check_id, props).id is None


def test_the_check_is_created_after_the_sites_dns_record():
    from tests._infra_plans import plan_of

    plan = plan_of("prod")
    (check,) = plan.of_type("pulumi-python:dynamic:Resource")
    (alias,) = [r for r in plan.of_type("aws:route53/record:Record") if r.inputs["type"] == "A"]
    # depends_on a component is depends_on each of its children
    waits, todo = set(), list(check.dependencies)
    while todo:
        urn = todo.pop()
        waits.add(urn)
        todo += [r.urn for r in plan.resources if r.parent == urn and r.urn not in waits]
    assert alias.urn in waits
