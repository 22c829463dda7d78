"""The fast path: page within a minute when a web node stops answering its health check.

Munin polls every 5 minutes, too slow for "the site is down". This watcher runs on the
monitoring host (started by the munin_master role) and probes every health endpoint — each
nginx and each app process's own check `/health/node` — every `monitoring.healthProbeIntervalS` seconds.
After `failures_to_page` failed probes in a row it triggers `stack/host/health/<node>` through
the alert pipeline (runbook web_node_down); after `successes_to_resolve` good probes it
resolves. Worst case from failure to page: failures_to_page × interval + probe timeout + send.

On AWS CloudWatch alarms on the target groups' UnHealthyHostCount page too (see
monitoring/README.md); the watcher's probes of the nginx nodes behind the load balancer share the
alarm's dedup key (`Target.shared_key`), so one outage is one incident, and its per-process view
of the app nodes (which the load balancer does not have) pages on its own keys.

The watcher runs as its own unprivileged account: it holds no secret and no alert state. Each
verdict that changes goes, as one line of JSON, to a root-owned hook it may run through sudo with
no arguments (monitoring/agents/health_hook.py), which pages through the stack's alert pipeline.

    python -m monitoring.agents.health_watcher --config /etc/photostack/health_watcher.json \
        --hook /usr/local/sbin/photostack-health-alert
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from monitoring.alerts.alert_pipeline import AlertPipeline, Outcome
from infra.alerts import HEALTH_PLUGIN, Alert, dedup_key

PLUGIN = HEALTH_PLUGIN  # alerts are stack/host/health/<node>; runbooks/web_node_down.md answers them
ERROR_CHARS = 200  # of a probe's error in a page's summary (the hook refuses longer ones)
log = logging.getLogger("health_watcher")
HOOK_TIMEOUT_S = 120.0  # PagerDuty retries included (monitoring/integrations/pagerduty_events.py)


@dataclass(frozen=True)
class Target:
    """One health endpoint: the node it stands for, the host running it, and its URL."""

    node: str
    host: str
    url: str
    shared_key: str | None = None
    """A dedup key shared with other targets (AWS: the web tier's, `web_tier_key`): one incident
    opens when the first of them fails and resolves when the last is back."""


@dataclass(frozen=True)
class WatcherConfig:
    """What the watcher probes and how patient it is (written by the munin_master role)."""

    stack: str
    targets: tuple[Target, ...]
    interval_s: float = 10.0
    failures_to_page: int = 2
    successes_to_resolve: int = 2
    timeout_s: float = 2.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> WatcherConfig:
        data = json.loads(text)
        return cls(**{**data, "targets": tuple(Target(**t) for t in data["targets"])})


@dataclass
class TargetState:
    """Consecutive probe results of one target; `down` is None until the first verdict."""

    failures: int = 0
    successes: int = 0
    down: bool | None = None
    last_error: str = ""


def decide(state: TargetState, ok: bool, error: str, failures_to_page: int, successes_to_resolve: int) -> str | None:
    """Update `state` with one probe result; "trigger" or "resolve" when the verdict changes."""
    if ok:
        state.failures, state.successes = 0, state.successes + 1
        if state.down is not False and state.successes >= successes_to_resolve:
            state.down = False
            return "resolve"
        return None
    state.successes, state.failures, state.last_error = 0, state.failures + 1, error
    if state.down is not True and state.failures >= failures_to_page:
        state.down = True
        return "trigger"
    return None


def probe(url: str, timeout_s: float) -> tuple[bool, str]:
    """GET `url`: (True, "") on a 200 answer, else (False, what went wrong)."""
    parts = urllib.parse.urlsplit(url)
    try:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout_s)
        try:
            conn.request("GET", parts.path or "/", headers={"User-Agent": "photostack-health-watcher"})
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if response.status != 200:
        return False, f"HTTP {response.status}"
    return True, ""


@dataclass(frozen=True)
class Verdict:
    """A target whose verdict changed: what the watcher hands over to be paged or resolved."""

    action: str  # "trigger" or "resolve"
    node: str
    failures: int = 0
    error: str = ""


class Pager(Protocol):
    """Where verdicts go: one call per round (with no verdicts too, so queued events are retried)."""

    def send(self, verdicts: Sequence[Verdict]) -> list[Outcome]:
        """Page or resolve each verdict, in order; one outcome per verdict."""


def alert_for(config: WatcherConfig, target: Target, failures: int, error: str) -> Alert:
    """The alert of a target failing its health check (its shared key's on AWS's web tier)."""
    summary = (f"{target.node} on {target.host} fails its health check {target.url} "
               f"({failures} probes in a row: {error})")
    limits = {"critical": f"{config.failures_to_page} failed probes"}
    if target.shared_key:  # stack/lb/health/nginx: the same alert as the load balancer's alarm
        stack, host, plugin, field = target.shared_key.split("/")
        return Alert(stack, host, plugin, field, "critical", "down", limits, summary)
    return Alert(config.stack, target.host, PLUGIN, target.node, "critical", "down", limits, summary)


class PipelinePager:
    """Pages verdicts through an alert pipeline in this process: the root hook's side (and tests')."""

    def __init__(self, config: WatcherConfig, pipeline: AlertPipeline):
        self.config = config
        self.pipeline = pipeline
        self.targets = {t.node: t for t in config.targets}

    def send(self, verdicts: Sequence[Verdict]) -> list[Outcome]:
        outcomes = [self._one(v) for v in verdicts]
        if self.pipeline.store.spooled():
            self.pipeline.flush_spool()  # PagerDuty was unreachable earlier: retry now
        return outcomes

    def _one(self, verdict: Verdict) -> Outcome:
        target = self.targets[verdict.node]
        if verdict.action == "trigger":
            return self.pipeline.trigger(alert_for(self.config, target, verdict.failures, verdict.error))
        return self.pipeline.resolve(target.shared_key or dedup_key(self.config.stack, target.host, PLUGIN, target.node))


class Watcher:
    """Probe every target each round; hand the verdicts that changed to the pager."""

    def __init__(self, config: WatcherConfig, pager: Pager,
                 prober: Callable[[str, float], tuple[bool, str]] = probe):
        self.config = config
        self.pager = pager
        self.prober = prober
        self.states = {t.node: TargetState() for t in config.targets}
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(16, len(config.targets))))

    def round(self) -> list[Outcome]:
        """Probe all targets once (in parallel) and hand over the verdicts that changed."""
        results = list(self._pool.map(lambda t: self.prober(t.url, self.config.timeout_s), self.config.targets))
        verdicts = []
        for target, (ok, error) in zip(self.config.targets, results):
            state = self.states[target.node]
            action = decide(state, ok, error, self.config.failures_to_page, self.config.successes_to_resolve)
            if action and target.shared_key:
                action = self._shared(target, action)
            if action:
                verdicts.append(Verdict(action, target.node, state.failures, state.last_error[:ERROR_CHARS]))
        outcomes = self.pager.send(verdicts)
        for verdict, outcome in zip(verdicts, outcomes):
            log.info("%s %s: %s %s", verdict.action, verdict.node, outcome.status, outcome.detail)
        return outcomes

    def _shared(self, target: Target, action: str) -> str | None:
        """A shared key pages on its first failing target and resolves with its last healthy one."""
        others = [self.states[t.node] for t in self.config.targets
                  if t.shared_key == target.shared_key and t.node != target.node]
        # Another target of the key is down: its incident is open already (trigger), or must stay (resolve).
        return None if any(o.down for o in others) else action

    def run(self, rounds: int | None = None) -> None:
        """Probe every `interval_s` (forever, or `rounds` times), keeping the rhythm steady."""
        count = 0
        next_at = time.monotonic()
        while rounds is None or count < rounds:
            self.round()
            count += 1
            next_at += self.config.interval_s
            time.sleep(max(0.0, next_at - time.monotonic()))

    def close(self) -> None:
        self._pool.shutdown(wait=False)


class SudoPager:
    """The watcher's side: hands verdicts to the root-owned hook with `sudo -n HOOK` (no arguments:
    sudoers allows nothing else). Verdicts the hook did not take are sent again next round."""

    def __init__(self, hook: str, sudo: Sequence[str] = ("/usr/bin/sudo", "-n")):
        self.command = [*sudo, hook]
        self.unsent: list[Verdict] = []
        self.spooled = 0

    def send(self, verdicts: Sequence[Verdict]) -> list[Outcome]:
        batch = [*self.unsent, *verdicts]
        if not batch and not self.spooled:
            return []
        stdin = "".join(json.dumps(asdict(v)) + "\n" for v in batch)
        try:
            done = subprocess.run(self.command, input=stdin, capture_output=True, text=True,
                                  timeout=HOOK_TIMEOUT_S, cwd="/")
        except (OSError, subprocess.TimeoutExpired) as exc:
            return self._keep(batch, verdicts, f"{type(exc).__name__}: {exc}")
        if done.returncode != 0:
            return self._keep(batch, verdicts, done.stderr.strip() or f"exit {done.returncode}")
        try:
            answer = json.loads(done.stdout)
            spooled, outcomes = int(answer["spooled"]), [Outcome(**o) for o in answer["outcomes"]]
        except (ValueError, TypeError, KeyError) as exc:
            return self._keep(batch, verdicts, f"unreadable answer: {exc}")
        self.unsent, self.spooled = [], spooled
        return outcomes[len(batch) - len(verdicts):]

    def _keep(self, batch: list[Verdict], verdicts: Sequence[Verdict], problem: str) -> list[Outcome]:
        """The hook took nothing: keep the whole batch, in order, for the next round."""
        log.error("alert hook %s failed, %d verdicts kept for the next round: %s",
                  self.command[-1], len(batch), problem)
        self.unsent = batch
        return [Outcome("queued", v.node, problem) for v in verdicts]


def main(argv: list[str] | None = None) -> int:
    """Run the watcher from its JSON config until killed, paging through the root-owned hook."""
    parser = argparse.ArgumentParser(prog="python -m monitoring.agents.health_watcher", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="JSON written by the munin_master role")
    parser.add_argument("--hook", required=True, help="the root-owned hook sudo lets this account run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        config = WatcherConfig.from_json(args.config.read_text())
    except (OSError, ValueError, TypeError, KeyError) as exc:
        print(f"health_watcher: cannot read {args.config}: {exc}", file=sys.stderr)
        return 2
    log.info("watching %d health endpoints every %ss, paging through %s", len(config.targets), config.interval_s,
             args.hook)
    Watcher(config, SudoPager(args.hook)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
