"""web_node_down on AWS is one incident whichever path sees it first: the health watcher's probes
of the nginx nodes share the dedup key that a PagerDuty event orchestration rule gives the load
balancer's CloudWatch alarm."""

from __future__ import annotations

from infra.config import load_stack_config
from monitoring.alerts.alert_pipeline import AlertPipeline
from monitoring.alerts.alert_store import AlertStore
from infra.alerts import web_tier_alarm_name, web_tier_key
from monitoring.agents.health_watcher import PipelinePager, Target, Watcher, WatcherConfig
from monitoring.alerts.silences import SilenceStore
from tests._infra_plans import plan_of


class Probes:
    """Probe answers by URL, set by the test (the watcher's injectable prober)."""

    def __init__(self) -> None:
        self.down: set[str] = set()

    def __call__(self, url: str, _timeout: float) -> tuple[bool, str]:
        return (False, "HTTP 503") if url in self.down else (True, "")


def test_the_nginx_nodes_page_one_incident_under_the_alarms_key(tmp_path):
    key = web_tier_key("prod")
    targets = (Target("nginx-0", "munin", "http://n0/health", key), Target("nginx-1", "munin", "http://n1/health", key),
               Target("app-0", "munin", "http://a0/health"))
    config = load_stack_config("onebox")
    pipeline = AlertPipeline(AlertStore(tmp_path), SilenceStore(tmp_path), None, config.alerting.runbook_base_url, "prod")
    probes = Probes()
    watched = WatcherConfig("prod", targets, failures_to_page=1, successes_to_resolve=1)
    watcher = Watcher(watched, PipelinePager(watched, pipeline), probes)
    watcher.round()  # the first verdicts (all healthy) resolve whatever was open before a restart
    actions = []
    for down in ({"http://n0/health"}, {"http://n0/health", "http://n1/health"}, {"http://n1/health"}, set(),
                 {"http://a0/health"}):
        probes.down = down
        actions += [(o.status, o.dedup_key) for o in watcher.round()]
    watcher.close()
    # nginx-0 opens the web tier's incident, nginx-1 joins it, it resolves when both are back;
    # the app node keeps its own per-process key.
    assert [k for _, k in actions] == [key, key, "prod/munin/health/app-0"]
    assert key == "prod/lb/health/nginx"


def test_the_alarms_events_get_the_watchers_key_in_pagerduty():
    plan = plan_of("prod")
    (alarm,) = [a for a in plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if "web_node_down" in a.inputs.get("name", "")]
    assert alarm.inputs["name"] == web_tier_alarm_name("prod")
    (orchestration,) = plan.of_type("pagerduty:index/eventOrchestrationService:EventOrchestrationService")
    (rule,) = orchestration.inputs["sets"][0]["rules"]
    assert rule["conditions"] == [{"expression": f"event.summary matches part '{alarm.inputs['name']}'"}]
    assert rule["actions"]["extractions"] == [{"target": "event.dedup_key", "template": web_tier_key("prod")}]
    assert orchestration.inputs["enableEventOrchestrationForService"] is True


def test_on_aws_the_munin_master_gives_the_nginx_targets_the_shared_key():
    from infra.inventory import Host
    from infra.topology import nodes
    from roles.context import RoleContext
    from roles.munin_master.role import watcher_config

    config = load_stack_config("staging")
    hosts = tuple(Host(n.name, f"10.30.0.{i + 10}", 22, "ubuntu", (n,)) for i, n in enumerate(nodes(config)))
    ctx = RoleContext(config, "staging", hosts[-1], hosts, lambda name: f"secret-{name}")
    shared = {t.node: t.shared_key for t in watcher_config(ctx).targets}
    assert {n for n, k in shared.items() if k} == {n.name for n in nodes(config) if n.role == "nginx"}
    assert set(shared.values()) == {web_tier_key("staging"), None}
