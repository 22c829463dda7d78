"""The alert model: what fired, how bad, and the PagerDuty Events v2 body that says so.

Pure values and functions only; the pipeline (monitoring/alerts/alert_pipeline.py) spools and sends them.
An alert is identified by `stack/host/plugin/field`, which is also its PagerDuty `dedup_key`, so
repeated triggers fold into one incident and a resolve closes it.

It is part of the model because the Pulumi program names the same things the host agents do (the
web tier's CloudWatch alarm and dedup key, runbook links, the SSM silences path, the Sentry
project): both read the names here, and the program depends on no agent code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["critical", "error", "warning", "info"]
# The health watcher's plugin name (monitoring/agents/health_watcher.py): probes, not a Munin graph.
HEALTH_PLUGIN = "health"
SEVERITIES: tuple[str, ...] = ("critical", "error", "warning", "info")

# Which runbook answers which alert: "plugin.field" first, then "plugin". Runbooks live in
# runbooks/<name>.md; an unmapped plugin points at a runbook named after the plugin itself.
RUNBOOKS: dict[str, str] = {
    "health": "web_node_down",
    "nginx.errors_5xx": "5xx_rate_high",
    "nginx": "5xx_rate_high",
    "postgres_primary": "shard_primary_down",
    "postgres_replication": "replication_lag_high",
    "postgres_archive": "wal_archive_failing",
    "pgbackrest_backup": "backup_stale",
    "pgbackrest_drill": "restore_drill_failed",
    "pgbouncer": "pgbouncer_clients_waiting",
    "redis": "redis_memory_high",
    "rabbitmq": "queue_backlog",
    "df": "disk_full",
    "pingdom": "pingdom_check_down",
}


def runbook_name(plugin: str, field: str) -> str:
    """The runbook file name (without `.md`) for an alert of `plugin.field`.

    Munin wildcard plugins carry their instance after the kind (`redis_primary`,
    `postgres_replication_0_replica1`): they share the runbook of their kind.
    """
    kinds = [plugin] + [plugin[:i] for i in range(len(plugin) - 1, 0, -1) if plugin[i] == "_"]
    for kind in kinds:
        if found := RUNBOOKS.get(f"{kind}.{field}") or RUNBOOKS.get(kind):
            return found
    return plugin


# Alerts without a Munin graph of their own link to the wallboard (live requests and 5xx).
WALLBOARD_ALERTS = ("health", "pingdom")


def graph_url(dashboard_base_url: str, stack: str, host: str, plugin: str) -> str:
    """Link to the graph of an alert's plugin: Munin's page of `plugin` on `host` (its group is
    the stack, as munin.conf names hosts), or the wallboard for alerts Munin does not graph."""
    base = dashboard_base_url.rstrip("/")
    if plugin in WALLBOARD_ALERTS:
        return f"{base}/wallboard/"
    return f"{base}/munin/{stack}/{host}/{plugin}.html"


def runbook_url(base_url: str, plugin: str, field: str) -> str:
    """Link to the runbook of `plugin.field` under `base_url` (alerting.runbookBaseUrl)."""
    return f"{base_url.rstrip('/')}/{runbook_name(plugin, field)}.md"


@dataclass(frozen=True)
class Alert:
    """One graphed value outside its limits (or back inside them)."""

    stack: str
    host: str
    plugin: str
    field: str
    severity: Severity
    value: str
    limits: dict[str, str] = field(default_factory=dict)
    summary: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        for name in ("stack", "host", "plugin", "field"):
            if not getattr(self, name) or "/" in getattr(self, name):
                raise ValueError(f"alert {name} {getattr(self, name)!r} must be non-empty and contain no '/'")

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.stack, self.host, self.plugin, self.field)

    @property
    def name(self) -> str:
        """The alert's name, which is also its runbook's name."""
        return runbook_name(self.plugin, self.field)

    def describe(self) -> str:
        """The summary, or one built from the value and its limits."""
        if self.summary:
            return self.summary
        limits = ", ".join(f"{k} {v}" for k, v in self.limits.items() if v)
        return f"{self.host} {self.plugin}.{self.field} is {self.value}" + (f" ({limits})" if limits else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dedup_key(stack: str, host: str, plugin: str, field: str) -> str:
    """PagerDuty dedup_key of an alert: `stack/host/plugin/field`."""
    return f"{stack}/{host}/{plugin}/{field}"


# The web tier behind the load balancer: on AWS its CloudWatch alarm (UnHealthyHostCount of the
# nginx target group, infra/load_balancer.py) and the health watcher's probes of the same nodes
# page one incident under one dedup key (a PagerDuty event orchestration rule gives the alarm's
# events this key, infra/cloudwatch_paging.py).
WEB_TIER = "nginx"


def web_tier_key(stack: str) -> str:
    """The dedup key of "a web node behind the load balancer is down" on AWS."""
    return dedup_key(stack, "lb", HEALTH_PLUGIN, WEB_TIER)


def web_tier_alarm_name(stack: str) -> str:
    """The CloudWatch alarm of the web tier (infra/load_balancer.py names it so)."""
    return f"photostack-{stack}-{runbook_name(HEALTH_PLUGIN, WEB_TIER)}-{WEB_TIER}"


def trigger_event(alert: Alert, runbook_base_url: str, environment: str,
                  dashboard_base_url: str = "") -> dict[str, Any]:
    """The Events v2 body (without routing_key) that opens or updates the alert's incident; with
    `dashboard_base_url`, it links the graph of what fired too."""
    link = runbook_url(runbook_base_url, alert.plugin, alert.field)
    links = [{"href": link, "text": f"Runbook: {alert.name}"}]
    graph = {}
    if dashboard_base_url:
        graph = {"graph": graph_url(dashboard_base_url, alert.stack, alert.host, alert.plugin)}
        links.append({"href": graph["graph"], "text": f"Graph: {alert.host} {alert.plugin}"})
    return {
        "event_action": "trigger",
        "dedup_key": alert.dedup_key,
        "payload": {
            "summary": f"[{environment}] {alert.describe()}"[:1024],
            "source": alert.host,
            "severity": alert.severity,
            "component": alert.plugin,
            "group": alert.stack,
            "class": alert.field,
            "custom_details": {
                "value": alert.value,
                **{f"{k}_limit": v for k, v in alert.limits.items()},
                "stack": alert.stack,
                "environment": environment,
                "alert": alert.name,
                "runbook": link,
                **graph,
            },
        },
        "links": links,
    }


def resolve_event(key: str) -> dict[str, Any]:
    """The Events v2 body (without routing_key) that resolves the incident of `key`."""
    return {"event_action": "resolve", "dedup_key": key}


def silences_path(stack: str) -> str:
    """The SSM path holding an AWS stack's host- and alert-scoped silences."""
    return f"/photostack/{stack}/silences/"


def audit_log_group(stack: str) -> str:
    """The CloudWatch Logs group of an AWS stack's audit trail (ops/audit.py), which its monitoring
    host reads for the wallboard."""
    return f"/photostack/{stack}/ops-audit"


def project_slug(environment: str) -> str:
    """The Sentry project of an environment: the AWS program creates it, `ops deploy` releases to it."""
    return f"photostack-{environment}"
