"""The alert path to PagerDuty: the real `pagerduty` client against a local HTTPS Events v2 server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from infra.config import parse_stack_config
from infra.secrets import SecretStore
from infra.state import state_dir
from monitoring.alerts.alert_pipeline import AlertPipeline
from monitoring.alerts.alert_store import AlertStore
from infra.alerts import Alert, dedup_key
from monitoring.integrations.pagerduty_events import CA_ENV, URL_ENV, PagerDutySender, RetryPolicy
from monitoring.alerts.silences import SilenceStore
from tests.fakes.pagerduty_server import PagerDutyServer
from tests.fakes.tls import CertificateFiles

KEY = "R0UT1NGKEY0123456789abcdef012345"
RUNBOOKS = "https://runbooks.example/photostack"
FAST = RetryPolicy(attempts=3, first_delay_s=0.01, timeout_s=5)


def redis_alert(severity: str = "critical", value: str = "245000000.00") -> Alert:
    return Alert("onebox", "redis-1", "redis", "used_memory", severity, value,
                 {"warning": ":200000000", "critical": ":240000000"})


def make_pipeline(directory: Path, server: PagerDutyServer | None, certs: CertificateFiles,
                  key: str = KEY) -> AlertPipeline:
    sender = (PagerDutySender(key, base_url=server.url, ca_bundle=str(certs.ca_bundle), retry=FAST)
              if server else None)
    return AlertPipeline(AlertStore(directory), SilenceStore(directory), sender, RUNBOOKS, "onebox",
                         note="" if server else "alerting.pagerduty is off")


def test_trigger_carries_dedup_key_severity_values_and_runbook(tmp_path, pagerduty_server, test_certificates):
    outcome = make_pipeline(tmp_path, pagerduty_server, test_certificates).trigger(redis_alert("warning"))

    assert outcome.status == "sent"
    [event] = pagerduty_server.events
    assert event["routing_key"] == KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "onebox/redis-1/redis/used_memory"
    payload = event["payload"]
    assert payload["severity"] == "warning"
    assert payload["source"] == "redis-1"
    assert payload["custom_details"]["value"] == "245000000.00"
    assert payload["custom_details"]["critical_limit"] == ":240000000"
    assert payload["custom_details"]["runbook"] == f"{RUNBOOKS}/redis_memory_high.md"
    assert event["links"] == [{"href": f"{RUNBOOKS}/redis_memory_high.md", "text": "Runbook: redis_memory_high"}]
    assert AlertStore(tmp_path).spooled() == []


def test_repeated_triggers_fold_into_one_incident_and_resolve_closes_it(tmp_path, pagerduty_server, test_certificates):
    pipeline = make_pipeline(tmp_path, pagerduty_server, test_certificates)
    pipeline.trigger(redis_alert("warning"))
    pipeline.trigger(redis_alert("critical"))
    outcome = pipeline.resolve(dedup_key("onebox", "redis-1", "redis", "used_memory"))

    assert outcome.status == "sent"
    assert [e["event_action"] for e in pagerduty_server.events] == ["trigger", "trigger", "resolve"]
    assert pagerduty_server.incidents == {"onebox/redis-1/redis/used_memory": "resolved"}


def test_resolve_of_an_alert_never_opened_sends_nothing(tmp_path, pagerduty_server, test_certificates):
    outcome = make_pipeline(tmp_path, pagerduty_server, test_certificates).resolve("onebox/app-1/nginx/errors_5xx")
    assert outcome.status == "skipped"
    assert pagerduty_server.requests == 0


def test_429_is_retried_with_backoff_by_the_client(tmp_path, pagerduty_server, test_certificates):
    pagerduty_server.fail_next(429, 2)
    started = time.monotonic()
    outcome = make_pipeline(tmp_path, pagerduty_server, test_certificates).trigger(redis_alert())

    assert outcome.status == "sent"
    assert pagerduty_server.requests == 3
    # Two waits of 0.01 s then 0.02 s: exponential, and bounded.
    assert time.monotonic() - started >= 0.03  # it waited between attempts (0.01 s, then 0.02 s)


def test_5xx_beyond_the_retry_budget_stays_spooled_until_flushed(tmp_path, pagerduty_server, test_certificates):
    pipeline = make_pipeline(tmp_path, pagerduty_server, test_certificates)
    pagerduty_server.fail_next(503, FAST.attempts)

    outcome = pipeline.trigger(redis_alert())
    assert outcome.status == "spooled"
    assert "503" in outcome.detail
    assert len(AlertStore(tmp_path).spooled()) == 1

    result = pipeline.flush_spool()
    assert result.sent == ["onebox/redis-1/redis/used_memory"] and result.remaining == 0
    assert len(pagerduty_server.events) == 1


def test_events_spooled_while_pagerduty_is_down_are_delivered_in_order_later(tmp_path, pagerduty_server, test_certificates):
    pipeline = make_pipeline(tmp_path, pagerduty_server, test_certificates)
    key = "onebox/redis-1/redis/used_memory"
    pagerduty_server.stop()

    assert pipeline.trigger(redis_alert()).status == "spooled"
    assert pipeline.resolve(key).status == "spooled"
    assert [i.event["event_action"] for i in AlertStore(tmp_path).spooled()] == ["trigger", "resolve"]

    pagerduty_server.start()
    result = pipeline.flush_spool()
    assert result.sent == [key, key] and result.remaining == 0
    assert [e["event_action"] for e in pagerduty_server.events] == ["trigger", "resolve"]
    assert pagerduty_server.incidents == {key: "resolved"}
    assert AlertStore(tmp_path).spooled() == []


def test_a_new_event_drains_older_spooled_events_first(tmp_path, pagerduty_server, test_certificates):
    pipeline = make_pipeline(tmp_path, pagerduty_server, test_certificates)
    pagerduty_server.stop()
    pipeline.trigger(redis_alert())
    pagerduty_server.start()

    nginx = Alert("onebox", "nginx-1", "nginx", "errors_5xx", "critical", "7.00", {"critical": ":5"})
    assert pipeline.trigger(nginx).status == "sent"
    assert [e["dedup_key"] for e in pagerduty_server.events] == [
        "onebox/redis-1/redis/used_memory", "onebox/nginx-1/nginx/errors_5xx"]


def test_certificate_not_trusted_means_not_delivered(tmp_path, pagerduty_server):
    sender = PagerDutySender(KEY, base_url=pagerduty_server.url, retry=FAST)
    pipeline = AlertPipeline(AlertStore(tmp_path), SilenceStore(tmp_path), sender, RUNBOOKS, "onebox")
    outcome = pipeline.trigger(redis_alert())
    assert outcome.status == "spooled"
    assert pagerduty_server.events == []


def test_an_invalid_event_is_set_aside_not_retried_forever(tmp_path, pagerduty_server, test_certificates):
    pipeline = make_pipeline(tmp_path, pagerduty_server, test_certificates, key=" ")
    outcome = pipeline.trigger(redis_alert())
    assert outcome.status == "rejected"
    assert "400" in outcome.detail
    assert AlertStore(tmp_path).spooled() == []
    assert len(list((tmp_path / "alert-spool" / "rejected").iterdir())) == 1


def test_without_a_routing_key_alerts_go_to_the_local_log(tmp_path, test_certificates):
    pipeline = make_pipeline(tmp_path, None, test_certificates)
    outcome = pipeline.trigger(redis_alert())
    assert outcome.status == "local"
    [record] = AlertStore(tmp_path).history()
    assert record["status"] == "local"
    assert record["dedup_key"] == "onebox/redis-1/redis/used_memory"
    assert record["runbook"] == f"{RUNBOOKS}/redis_memory_high.md"


def test_silenced_alerts_do_not_page_but_are_logged(tmp_path, pagerduty_server, test_certificates):
    SilenceStore(tmp_path).add(1800, host="redis-1")
    outcome = make_pipeline(tmp_path, pagerduty_server, test_certificates).trigger(redis_alert())
    assert outcome.status == "silenced"
    assert pagerduty_server.requests == 0
    assert AlertStore(tmp_path).history()[-1]["status"] == "silenced"


def test_for_stack_reads_config_secret_and_endpoint_env(state_root, pagerduty_server, test_certificates, monkeypatch):
    document = yaml.safe_load(Path("Pulumi.onebox.yaml").read_text())
    document["config"]["photostack:alerting"] = {"pagerduty": True, "runbookBaseUrl": RUNBOOKS}
    config = parse_stack_config(document)
    SecretStore.for_stack("onebox").set("pagerdutyRoutingKey", KEY)
    monkeypatch.setenv(URL_ENV, pagerduty_server.url)
    monkeypatch.setenv(CA_ENV, str(test_certificates.ca_bundle))

    outcome = AlertPipeline.for_stack("onebox", config=config, retry=FAST).trigger(redis_alert())

    assert outcome.status == "sent"
    assert pagerduty_server.events[0]["routing_key"] == KEY
    assert pagerduty_server.events[0]["payload"]["summary"].startswith("[onebox] redis-1 redis.used_memory")
    # The page links the graph of what fired: Munin's page of the plugin on that host, served by the stack.
    graph = "http://127.0.0.1:8080/munin/onebox/redis-1/redis.html"
    assert pagerduty_server.events[0]["payload"]["custom_details"]["graph"] == graph
    assert pagerduty_server.events[0]["links"][1] == {"href": graph, "text": "Graph: redis-1 redis"}
    assert AlertStore(state_dir("onebox")).history()[-1]["status"] == "sent"


def test_graph_links_point_at_munin_or_for_health_at_the_wallboard():
    from infra.alerts import graph_url

    base = "https://photostack.example.com"
    assert graph_url(base, "prod", "redis-primary", "redis_primary") == f"{base}/munin/prod/redis-primary/redis_primary.html"
    assert graph_url(base + "/", "prod", "nginx-0", "health") == f"{base}/wallboard/"


@pytest.mark.parametrize("plugin,field,runbook", [
    ("pgbouncer", "waiting", "pgbouncer_clients_waiting"),
    ("postgres_replication", "lag_bytes", "replication_lag_high"),
    ("nginx", "errors_5xx", "5xx_rate_high"),
    ("rabbitmq", "messages_ready", "queue_backlog"),
    ("custom_thing", "x", "custom_thing"),
])
def test_runbook_names_follow_the_plugin(plugin, field, runbook):
    assert Alert("s", "h", plugin, field, "warning", "1").name == runbook
