"""The alert path: silence check → spool → PagerDuty (or the local log when no key is set).

Callers (Munin's contact hook, the fast health watcher, Pingdom sync) use:

    pipeline = AlertPipeline.for_stack("onebox")
    pipeline.trigger(Alert(stack, host, plugin, field, severity, value, limits, summary))
    pipeline.resolve(dedup_key(stack, host, plugin, field))
    pipeline.flush_spool()

or the one-call helpers `send_alert`, `resolve_alert` and `flush_alerts` below.
Every event is spooled before it is sent and removed only once PagerDuty accepted it; the spool
is always drained oldest first, so a resolve never overtakes its trigger.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.config import StackConfig, load_stack_config
from infra.state import state_dir
from infra.targets import target_of
from monitoring.alerts.alert_store import AlertStore
from infra.alerts import Alert, dedup_key, resolve_event, trigger_event
from monitoring.integrations.pagerduty_events import DeliveryError, PagerDutySender, RetryPolicy
from monitoring.alerts.silences import SilenceStore, SsmSilenceStore, silence_store
from monitoring.wallboard_markers import PAGE_FILE, MarkerWriter, file_writer

ROUTING_KEY = "pagerdutyRoutingKey"
# `<state dir>/pagerduty-override.json` {"url", "ca", "routing_key"}: pages of the stack go to that
# Events API endpoint, whatever its config says (fault drills point the one-box's watcher at a
# local endpoint with it; removing the file, and restarting the watcher, restores the config's).
OVERRIDE_FILE = "pagerduty-override.json"


def endpoint_override(directory: Path) -> dict[str, str] | None:
    """The stored PagerDuty endpoint override of a stack's state dir, if any."""
    path = directory / OVERRIDE_FILE
    return json.loads(path.read_text()) if path.exists() else None


@dataclass(frozen=True)
class Outcome:
    """What happened to one alert: sent, spooled, local, silenced, rejected or skipped."""

    status: str
    dedup_key: str
    detail: str = ""


@dataclass
class FlushResult:
    """Spool drain summary: dedup keys sent and rejected, events still queued, last error."""

    sent: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    remaining: int = 0
    error: str = ""


log = logging.getLogger(__name__)


def _markers() -> MarkerWriter | None:
    """Page markers for the wallboard, where their file's directory is: the monitoring host (the
    munin_master role makes it), on every target; None elsewhere (an operator's `ops`)."""
    path = Path(PAGE_FILE)
    return file_writer(path) if path.parent.is_dir() else None


def dashboard_base_url(config: StackConfig) -> str:
    """Where the stack's dashboards are: nginx on the one-box, the load balancer (behind the
    operator login) on AWS; /munin/ and /wallboard/ hang below it."""
    return target_of(config).dashboard_base_url()


class AlertPipeline:
    """Alerts of one stack, from decision to delivery."""

    def __init__(self, store: AlertStore, silences: SilenceStore | SsmSilenceStore, sender: PagerDutySender | None,
                 runbook_base_url: str, environment: str, note: str = "", dashboard_base_url: str = "",
                 markers: MarkerWriter | None = None):
        self.store = store
        self.dashboard_base_url = dashboard_base_url
        # Puts a "page" marker on the wallboard when an incident opens (None: not on the monitoring host).
        self.markers = markers
        self.silences = silences
        self.sender = sender
        self.runbook_base_url = runbook_base_url
        self.environment = environment
        # Why events stay local (e.g. PagerDuty enabled but the routing key is missing).
        self.note = note

    @classmethod
    def for_stack(cls, stack: str, config: StackConfig | None = None,
                  retry: RetryPolicy = RetryPolicy()) -> AlertPipeline:
        """The pipeline of `stack`: its config, its state dir and its routing key secret."""
        config = config or load_stack_config(stack)
        directory = state_dir(stack)
        override = endpoint_override(directory)
        if override:
            sender = PagerDutySender(override["routing_key"], override["url"], override.get("ca"), retry=retry)
            return cls(AlertStore(directory), SilenceStore(directory), sender, config.alerting.runbook_base_url,
                       config.environment, f"PagerDuty endpoint overridden by {directory / OVERRIDE_FILE}",
                       dashboard_base_url(config))
        key = routing_key(stack, config) if config.alerting.pagerduty else None
        note = ""
        if config.alerting.pagerduty and not key:
            note = f"alerting.pagerduty is on but the {ROUTING_KEY} secret is missing"
        elif not config.alerting.pagerduty:
            note = "alerting.pagerduty is off"
        sender = PagerDutySender.from_env(key, retry=retry) if key else None
        # On AWS (the munin master) the silences every operator set, in SSM.
        silences = silence_store(stack, config)
        return cls(AlertStore(directory), silences, sender,
                   config.alerting.runbook_base_url, config.environment, note, dashboard_base_url(config),
                   _markers())

    def trigger(self, alert: Alert) -> Outcome:
        """Open (or refresh) the incident of `alert`, unless a silence covers it."""
        event = trigger_event(alert, self.runbook_base_url, self.environment, self.dashboard_base_url)
        with self.store.locked():
            silence = self.silences.matching(alert)
            if silence:
                detail = f"silence {silence.id}"
                self.store.log("silenced", event, detail)
                return Outcome("silenced", alert.dedup_key, detail)
            opens = alert.dedup_key not in self.store.open_alerts()
            self.store.mark_open(alert.dedup_key, alert.severity)
            outcome = self._deliver(event)
        if opens and self.markers is not None:
            try:
                self.markers("page", f"{alert.name}: {alert.describe()}"[:200])
            except Exception as exc:  # noqa: BLE001 — the page went out; the board is a nicety
                log.warning("page marker not recorded: %s", exc)
        return outcome

    def resolve(self, key: str) -> Outcome:
        """Resolve the incident of `key` if we opened one (OK states repeat; resolve once)."""
        with self.store.locked():
            if not self.store.mark_resolved(key):
                return Outcome("skipped", key, "no open alert")
            return self._deliver(resolve_event(key))

    def flush_spool(self) -> FlushResult:
        """Send queued events oldest first; stop at the first one PagerDuty cannot take yet."""
        with self.store.locked():
            return self._flush()

    def _deliver(self, event: dict[str, Any]) -> Outcome:
        key = event["dedup_key"]
        if self.sender is None:
            self.store.log("local", event, self.note)
            return Outcome("local", key, self.note)
        item = self.store.spool(event)
        result = self._flush()
        if item.path.exists():
            return Outcome("spooled", key, result.error)
        if (self.store.rejected_dir / item.path.name).exists():
            return Outcome("rejected", key, result.error)
        return Outcome("sent", key)

    def _flush(self) -> FlushResult:
        result = FlushResult()
        if self.sender is None:
            result.remaining = len(self.store.spooled())
            result.error = self.note
            return result
        queue = self.store.spooled()
        for index, item in enumerate(queue):
            try:
                self.sender.send(item.event)
            except DeliveryError as exc:
                result.error = str(exc)
                if exc.retryable:
                    self.store.log("spooled", item.event, str(exc))
                    result.remaining = len(queue) - index
                    return result
                self.store.reject(item)
                self.store.log("rejected", item.event, str(exc))
                result.rejected.append(item.event["dedup_key"])
                continue
            self.store.delivered(item)
            self.store.log("sent", item.event)
            result.sent.append(item.event["dedup_key"])
        return result


def send_alert(alert: Alert) -> Outcome:
    """Trigger `alert` through its stack's pipeline."""
    return AlertPipeline.for_stack(alert.stack).trigger(alert)


def resolve_alert(stack: str, host: str, plugin: str, field: str) -> Outcome:
    """Resolve the alert of `stack/host/plugin/field` if it is open."""
    return AlertPipeline.for_stack(stack).resolve(dedup_key(stack, host, plugin, field))


def flush_alerts(stack: str) -> FlushResult:
    """Send the spooled events of `stack`."""
    return AlertPipeline.for_stack(stack).flush_spool()


def routing_key(stack: str, config: StackConfig) -> str | None:
    """The stack's PagerDuty routing key where its secrets are kept (None when it is not set): the
    state dir on the one-box; on AWS the SSM parameter `pulumi up` writes from the PagerDuty
    integration, which the monitoring host's instance profile may read (infra/secrets_store.py)."""
    return target_of(config).secret_store(stack, fill=False).get(ROUTING_KEY)
