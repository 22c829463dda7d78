"""Pages put a marker on the wallboard: once when an incident opens, not on every refresh, and a
Redis that does not answer never stops the page (real Redis, local pipeline, no PagerDuty)."""

from __future__ import annotations

import json

import redis

from monitoring.alert_pipeline import AlertPipeline
from monitoring.alert_store import AlertStore
from monitoring.alerts import Alert
from monitoring.silences import SilenceStore
from monitoring.wallboard_markers import KEY, redis_writer
from tests.monitoring.conftest import free_port


def pipeline(tmp_path, port: int) -> AlertPipeline:
    return AlertPipeline(AlertStore(tmp_path), SilenceStore(tmp_path), None, "https://runbooks.example", "onebox",
                         note="alerting.pagerduty is off", markers=redis_writer("127.0.0.1", port, None))


def alert(host: str) -> Alert:
    return Alert("onebox", host, "nginx", "errors_5xx", "critical", "12.00", {"critical": ":5"})


def test_an_opened_incident_marks_the_wallboard_once(tmp_path, redis_port):
    client = redis.Redis(port=redis_port)
    client.delete(KEY)
    pages = pipeline(tmp_path, redis_port)
    assert pages.trigger(alert("nginx-0")).status == "local"
    pages.trigger(alert("nginx-0"))  # Munin repeats a firing alert every cycle
    (raw,) = client.lrange(KEY, 0, -1)
    marker = json.loads(raw)
    assert marker["kind"] == "page" and marker["text"].startswith("5xx_rate_high: nginx-0 nginx.errors_5xx is 12.00")
    pages.resolve(alert("nginx-0").dedup_key)
    pages.trigger(alert("nginx-0"))  # a new incident: a new marker
    assert client.llen(KEY) == 2


def test_a_page_goes_out_when_the_wallboards_redis_is_down(tmp_path):
    outcome = pipeline(tmp_path, free_port()).trigger(alert("nginx-1"))
    assert outcome.status == "local" and AlertStore(tmp_path).history()[-1]["status"] == "local"
