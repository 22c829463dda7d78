"""The fast path: a health endpoint that stops answering pages within the bound, and resolves."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler

import pytest

from infra.config import load_stack_config
from monitoring.alerts.alert_pipeline import AlertPipeline
from monitoring.alerts.alert_store import AlertStore
from monitoring.agents.health_watcher import PipelinePager, Target, TargetState, Watcher, WatcherConfig, decide
from monitoring.integrations.pagerduty_events import PagerDutySender, RetryPolicy
from monitoring.alerts.silences import SilenceStore
from tests.fakes.base import LocalServer

PAGE_BOUND_S = 60.0


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args) -> None:
        """Quiet."""


class AppStandIn(LocalServer):
    """A loopback HTTP server answering /health, standing in for one app process."""

    handler = _Health  # type: ignore[assignment]


@pytest.mark.parametrize(
    "results, actions",
    [
        ("ok ok", [None, "resolve"]),  # first verdict: up (closes an incident left open)
        ("ok ok fail fail fail", [None, "resolve", None, "trigger", None]),
        ("fail ok fail fail ok ok ok", [None, None, None, "trigger", None, "resolve", None]),
    ],
)
def test_verdicts_need_consecutive_results(results, actions):
    state = TargetState()
    got = [decide(state, r == "ok", "" if r == "ok" else "refused", 2, 2) for r in results.split()]
    assert got == actions


def test_a_dead_health_endpoint_pages_within_the_bound_and_resolves(tmp_path, pagerduty_server,
                                                                      test_certificates):
    config = load_stack_config("onebox")
    sender = PagerDutySender("R0UTINGKEY0000000000000000000000", base_url=pagerduty_server.url,
                             ca_bundle=str(test_certificates.ca_bundle),
                             retry=RetryPolicy(attempts=2, first_delay_s=0.01, timeout_s=2))
    pipeline = AlertPipeline(AlertStore(tmp_path), SilenceStore(tmp_path), sender,
                             config.alerting.runbook_base_url, config.environment)
    with AppStandIn() as app:
        watched = WatcherConfig("onebox", (Target("app-0", "onebox", f"{app.url}/health"),), interval_s=0.5,
                                failures_to_page=2, successes_to_resolve=2, timeout_s=0.5)
        watcher = Watcher(watched, PipelinePager(watched, pipeline))
        for _ in range(2):
            watcher.round()
        app.stop()  # the app process dies
        died = time.monotonic()
        while "onebox/onebox/health/app-0" not in pagerduty_server.incidents and time.monotonic() - died < 10:
            watcher.round()
            time.sleep(watched.interval_s)
        paged_after = time.monotonic() - died
        app.start()  # same port: the process is back
        back = time.monotonic()
        while pagerduty_server.incidents.get("onebox/onebox/health/app-0") != "resolved" and time.monotonic() - back < 10:
            watcher.round()
            time.sleep(watched.interval_s)
        resolved_after = time.monotonic() - back
        watcher.close()
    triggers = [e for e in pagerduty_server.events if e["event_action"] == "trigger"]
    assert len(triggers) == 1, "one page per outage, not one per probe"
    assert triggers[0]["payload"]["severity"] == "critical"
    assert triggers[0]["links"][0]["href"].endswith("/web_node_down.md")
    assert "app-0" in triggers[0]["payload"]["summary"]
    assert pagerduty_server.incidents == {"onebox/onebox/health/app-0": "resolved"}
    # failures_to_page × interval (+ timeouts), far inside the one-minute bound.
    assert paged_after < min(PAGE_BOUND_S, 5.0), paged_after
    assert resolved_after < 5.0, resolved_after
