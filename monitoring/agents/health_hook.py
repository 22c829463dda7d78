"""The health watcher's only way to page: a root-owned hook it runs through sudo, verdicts on stdin.

The watcher runs as its own unprivileged account (roles/munin_master): it probes, decides, and
hands each changed verdict over as one JSON line, `{"action": "trigger"|"resolve", "node": N,
"failures": F, "error": E}`. The hook runs as root (the alert state and the routing key are
root-only) and trusts only those four values: the node must be one of the root-owned watcher
config's targets, and the alert's key, host, URL and runbook come from that config, so the
account can page or resolve its own health alerts and nothing else. Bad input is refused as a
whole (one line, exit 2, nothing paged). The hook answers one JSON object on stdout:
`{"outcomes": [{"status", "dedup_key", "detail"}...], "spooled": N}`; while N > 0 (PagerDuty
unreachable) the watcher calls it every round, with no verdicts, so the spool drains.

Root side (from the hook script only, roles/munin_master/templates/health-alert-hook.j2):

    python -P -m monitoring.agents.health_hook --config /etc/photostack/health_watcher.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from infra.config import ConfigError
from monitoring.alerts.alert_pipeline import AlertPipeline
from monitoring.agents.health_watcher import ERROR_CHARS, PipelinePager, Verdict, WatcherConfig

ACTIONS = ("trigger", "resolve")
MAX_INPUT = 64 * 1024  # far more than one verdict per target of any stack
log = logging.getLogger("health_watcher")


def parse_verdicts(text: str, config: WatcherConfig) -> list[Verdict]:
    """The verdicts on the hook's stdin; ValueError naming the first bad line."""
    if len(text) > MAX_INPUT:
        raise ValueError(f"more than {MAX_INPUT} bytes of verdicts")
    nodes = {t.node for t in config.targets}
    verdicts = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"verdict line {number}: not JSON ({exc.msg})") from None
        if not isinstance(item, dict) or set(item) != {"action", "node", "failures", "error"}:
            raise ValueError(f"verdict line {number}: must be an object with action, node, failures, error")
        action, node, failures, error = item["action"], item["node"], item["failures"], item["error"]
        if action not in ACTIONS:
            raise ValueError(f"verdict line {number}: action {action!r} is not one of {', '.join(ACTIONS)}")
        if node not in nodes:
            raise ValueError(f"verdict line {number}: node {node!r} is not a target of the watcher config")
        if type(failures) is not int or not 0 <= failures <= 1_000_000:
            raise ValueError(f"verdict line {number}: failures must be a whole number from 0 to 1000000")
        if not isinstance(error, str) or len(error) > ERROR_CHARS:
            raise ValueError(f"verdict line {number}: error must be text of at most {ERROR_CHARS} characters")
        verdicts.append(Verdict(action, node, failures, error))
    return verdicts


def main(argv: list[str] | None = None) -> int:
    """Root side: page the verdicts on stdin through the stack's pipeline; answer JSON on stdout."""
    parser = argparse.ArgumentParser(prog="python -m monitoring.agents.health_hook", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="the root-owned watcher config")
    args = parser.parse_args(argv)
    try:
        config = WatcherConfig.from_json(args.config.read_text())
        verdicts = parse_verdicts(sys.stdin.read(MAX_INPUT + 1), config)
        pipeline = AlertPipeline.for_stack(config.stack)
    except ConfigError as exc:
        print(f"health_hook: {exc.problems[0]}", file=sys.stderr)
        return 2
    except (OSError, ValueError, TypeError, KeyError) as exc:
        print(f"health_hook: {exc}", file=sys.stderr)
        return 2
    outcomes = PipelinePager(config, pipeline).send(verdicts)
    answer = {"outcomes": [asdict(o) for o in outcomes], "spooled": len(pipeline.store.spooled())}
    print(json.dumps(answer))
    return 0



if __name__ == "__main__":
    sys.exit(main())
