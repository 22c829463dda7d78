"""Pages say how urgent they are and link to the graph: warnings low urgency and criticals high (the
PagerDuty service's urgency follows each event's severity), and every Munin alert's event links to
its graph on the dashboard next to its runbook."""

from __future__ import annotations

from infra.config import load_stack_config
from monitoring.alerts.alert_pipeline import AlertPipeline, dashboard_base_url
from infra.alerts import Alert, trigger_event
from tests._infra_plans import plan_of


def test_the_pagerduty_service_takes_urgency_from_each_events_severity():
    (service,) = plan_of("prod").of_type("pagerduty:index/service:Service")
    assert service.inputs["incidentUrgencyRule"] == {"type": "constant", "urgency": "severity_based"}


def test_warnings_and_criticals_keep_their_severity_in_the_event():
    for severity in ("warning", "critical"):
        event = trigger_event(Alert("prod", "redis-primary", "redis", "used_memory", severity, "9"),
                              "https://runbooks.example/", "prod", "https://photostack.example.com")
        assert event["payload"]["severity"] == severity


def test_a_munin_alert_links_its_graph_and_its_runbook(state_root):
    alert = Alert("onebox", "onebox", "redis_primary", "used_memory", "critical", "9")
    pipeline = AlertPipeline.for_stack("onebox", load_stack_config("onebox"))
    event = trigger_event(alert, "https://runbooks.example/", "onebox", pipeline.dashboard_base_url)
    config = load_stack_config("onebox")
    assert [link["href"] for link in event["links"]] == [
        "https://runbooks.example/redis_memory_high.md",
        f"http://{config.onebox.address}:{config.onebox.http_port}/munin/onebox/onebox/redis_primary.html",
    ]


def test_a_health_probe_links_the_wallboard_and_aws_links_the_dashboard_behind_the_login():
    """Munin does not graph the health watcher's probes: their graph link is the wallboard; on AWS
    both sit on the load balancer's domain (behind its operator login)."""
    config = load_stack_config("prod")
    probe = Alert("prod", "munin_master-0", "health", "nginx-1", "critical", "down")
    event = trigger_event(probe, "https://runbooks.example/", "prod", dashboard_base_url(config))
    assert [link["href"] for link in event["links"]] == [
        "https://runbooks.example/web_node_down.md", f"https://{config.domain}/wallboard/"]
