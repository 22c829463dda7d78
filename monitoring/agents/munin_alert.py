"""Munin's contact hook: `munin-limits` pipes one line per field state here; we page or resolve.

munin.conf of the Munin master (the munin_master role writes these lines; `{hook}` is a root-owned
wrapper that runs this module for the stack, see roles/munin_master/templates/munin-alert-hook.j2):

    contact.photostack.command /usr/bin/sudo -n {hook}
    contact.photostack.always_send warning critical
    contact.photostack.text ${loop<\\n>:cfields photostack-alert\\tstate=critical\\thost=${var:host}\\tplugin=${var:plugin}\\tfield=${var:\\#%\\#name}\\tvalue=${var:value}\\twarning=${var:wrange}\\tcritical=${var:crange}\\tlabel=${var:label}}\\n${loop<\\n>:wfields ...state=warning...}\\n${loop<\\n>:ufields ...state=unknown...}\\n${loop<\\n>:fofields ...state=ok...}

(`munin_conf_lines()` returns the exact lines.) Each field then arrives as one tab-separated line:

    photostack-alert  state=critical  host=redis-1  plugin=redis  field=used_memory  value=245000000.00  warning=:  critical=:240000000  label=used memory

Notes on Munin 2.0 (checked against its LimitsOld.pm): inside `${loop:...}` the variables are the
field's own, falling back to the service's (host, plugin); the field *name* has no documented
variable, so we read the node's internal name `#%#name` (`\\#` escapes munin.conf's comment sign).
`always_send warning critical` re-sends firing alerts every run: PagerDuty folds them by dedup_key,
and a page suppressed by an expired silence then still goes out. `fofields` falls back to all OK
fields, so OK lines repeat; the pipeline only resolves alerts it opened.
States: CRITICAL → severity critical, WARNING → warning, UNKNOWN → error (no data usually means
the service itself is down), OK → resolve.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from infra.config import ConfigError
from monitoring.alerts.alert_pipeline import AlertPipeline, Outcome
from infra.alerts import Alert, dedup_key

MARKER = "photostack-alert"
CONTACT = "photostack"
_FIELD = (
    MARKER + r"\tstate=STATE\thost=${var:host}\tplugin=${var:plugin}\tfield=${var:\#%\#name}"
    r"\tvalue=${var:value}\twarning=${var:wrange}\tcritical=${var:crange}\tlabel=${var:label}"
)
_LISTS = (("cfields", "critical"), ("wfields", "warning"), ("ufields", "unknown"), ("fofields", "ok"))
CONTACT_TEXT = r"\n".join("${loop<\\n>:" + fields + " " + _FIELD.replace("STATE", state) + "}"
                          for fields, state in _LISTS)
SEVERITY = {"critical": "critical", "warning": "warning", "unknown": "error"}


def munin_conf_lines(hook: str) -> list[str]:
    """The munin.conf lines that route Munin's limits through `hook` (run as root with `sudo -n`:
    munin-limits runs as munin and the alert state is root-only; sudo allows that exact path
    with no arguments)."""
    return [
        f"contact.{CONTACT}.command /usr/bin/sudo -n {hook}",
        f"contact.{CONTACT}.always_send warning critical",
        f"contact.{CONTACT}.text {CONTACT_TEXT}",
    ]


@dataclass(frozen=True)
class FieldState:
    """One field's state as Munin reported it."""

    state: str
    host: str
    plugin: str
    field: str
    value: str
    warning: str = ""
    critical: str = ""
    label: str = ""

    def alert(self, stack: str) -> Alert:
        """The alert to trigger for a WARNING, CRITICAL or UNKNOWN state."""
        limits = {k: v for k, v in (("warning", self.warning), ("critical", self.critical)) if v}
        what = f"{self.host} {self.plugin}.{self.field}"
        summary = f"{what} value is unknown (no data)" if self.state == "unknown" else ""
        return Alert(stack, self.host, self.plugin, self.field, SEVERITY[self.state], self.value,  # type: ignore[arg-type]
                     limits, summary)


def _range(text: str) -> str:
    # Munin renders an unset range as ":".
    return "" if text.strip() in ("", ":") else text.strip()


def parse_line(line: str) -> FieldState | None:
    """A `photostack-alert` line as a FieldState; None for any other line (blank, other text)."""
    parts = line.rstrip("\n").split("\t")
    if parts[0].strip() != MARKER:
        return None
    values = dict(part.partition("=")[::2] for part in parts[1:])
    state = values.get("state", "").lower()
    host, plugin = values.get("host", ""), values.get("plugin", "")
    if state not in ("ok", *SEVERITY) or not host or not plugin:
        raise ValueError(f"malformed Munin alert line: {line.strip()!r}")
    # The field name comes from an undocumented variable; fall back to the label if it is empty.
    field = values.get("field") or values.get("label", "").replace(" ", "_")
    if not field:
        raise ValueError(f"Munin alert line names no field: {line.strip()!r}")
    return FieldState(state, host, plugin, field, values.get("value", ""), _range(values.get("warning", "")),
                      _range(values.get("critical", "")), values.get("label", ""))


def handle(states: Iterable[FieldState], pipeline: AlertPipeline, stack: str) -> list[Outcome]:
    """Trigger or resolve each state through `pipeline`."""
    outcomes = []
    for item in states:
        if item.state == "ok":
            outcomes.append(pipeline.resolve(dedup_key(stack, item.host, item.plugin, item.field)))
        else:
            outcomes.append(pipeline.trigger(item.alert(stack)))
    return outcomes


def main(argv: list[str] | None = None) -> int:
    """Read Munin's contact lines on stdin and feed them to the stack's alert pipeline."""
    parser = argparse.ArgumentParser(prog="python -m monitoring.agents.munin_alert", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="onebox")
    args = parser.parse_args(argv)
    try:
        pipeline = AlertPipeline.for_stack(args.stack)
    except ConfigError as exc:
        print(f"munin_alert: {exc.problems[0]}", file=sys.stderr)
        return 2
    status = 0
    # Munin keeps the pipe open across services; handle each line as it arrives.
    for line in sys.stdin:
        try:
            state = parse_line(line)
        except ValueError as exc:
            print(f"munin_alert: {exc}", file=sys.stderr)
            status = 1
            continue
        if state:
            for outcome in handle([state], pipeline, args.stack):
                print(f"{outcome.status} {outcome.dedup_key} {outcome.detail}".rstrip(), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
