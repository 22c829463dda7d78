"""Facts in, plan out: build the one-round-trip fact script and turn its output into changes.

Pure functions: no SSH here. Tests feed recorded fact output as data (tests/engine_cases/*.json).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from roles.engine.resources import Change, DesiredState, Handler


def sections(output: str, marker: str) -> list[tuple[str, list[str]]]:
    """The output of a script that prints `<marker><head>` before each part, as (head, the lines
    after it) per part; lines before the first marker are dropped. The one way photostack reads
    a multi-part answer of a host (the fact script here, `ops status`'s host script)."""
    found: list[tuple[str, list[str]]] = []
    for line in output.splitlines():
        if line.startswith(marker):
            found.append((line[len(marker):], []))
        elif found:
            found[-1][1].append(line)
    return found


@dataclass(frozen=True)
class FactScript:
    """A shell script that prints every resource's fact between unique markers."""

    text: str
    marker: str

    def parse(self, output: str, count: int) -> list[str]:
        """Split the script's output back into one fact string per resource."""
        facts = [""] * count
        for head, lines in sections(output, self.marker):
            facts[int(head)] = "\n".join(lines)
        return facts


def fact_script(state: DesiredState) -> FactScript:
    """One script reading the facts of every resource (one SSH round trip)."""
    marker = f"@@photostack-{secrets.token_hex(4)}@@"
    preludes = dict.fromkeys(p for r in state.resources if (p := getattr(r, "fact_prelude", "")))
    parts = ["exec 2>/dev/null", *preludes]
    for index, resource in enumerate(state.resources):
        parts.append(f"echo '{marker}{index}'")
        parts.append(f"{{ {resource.fact_command()} ; }}")
    return FactScript("\n".join(parts) + "\n", marker)


@dataclass
class Plan:
    """What a converge would change on one host."""

    changes: list[Change] = field(default_factory=list)
    ok: int = 0  # resources already as desired
    handlers: list[Handler] = field(default_factory=list)

    def notified_handlers(self, applied: list[Change]) -> list[Handler]:
        """Handlers notified by the applied changes, each once, in declared order."""
        names = {name for change in applied for name in change.notify}
        return [h for h in self.handlers if h.name in names]


def make_plan(state: DesiredState, facts: list[str]) -> Plan:
    """Compare each resource with its fact; the differences are the plan."""
    plan = Plan(handlers=list(state.handlers))
    for resource, fact in zip(state.resources, facts, strict=True):
        changes = resource.changes(fact)
        if changes:
            plan.changes += changes
        else:
            plan.ok += 1
    known = {h.name for h in state.handlers}
    unknown = {n for c in plan.changes for n in c.notify} - known
    if unknown:
        raise ValueError(f"changes notify unknown handlers: {', '.join(sorted(unknown))}")
    return plan


def apply_script(changes: list[Change], handlers: list[Handler]) -> tuple[str, str]:
    """One script applying changes in order, then handlers; no change runs after a failure.

    A handler still runs when a change that notified it was applied, even if a later change
    failed (a config written must be loaded: the next converge would not notify again).
    Each step prints `<marker>STEP i` before and `<marker>RC i rc` after, so the caller can tell
    which steps ran and which failed. Returns (script, marker).
    """
    marker = f"@@photostack-{secrets.token_hex(4)}@@"
    lines = ["set -u", "failed="]
    for index, change in enumerate(changes):
        step = " && ".join(f"( {c} )" for c in change.commands)
        lines.append(f'if [ -z "$failed" ]; then echo \'{marker}STEP {index}\'')
        lines.append(f"( {step} ) 2>&1 < /dev/null")
        lines.append(f"rc=$?; echo '{marker}RC {index}' $rc; [ $rc -eq 0 ] && applied_{index}=1 || failed=1; fi")
    for offset, handler in enumerate(handlers):
        index = len(changes) + offset
        notifiers = [i for i, c in enumerate(changes) if handler.name in c.notify]
        applied = "".join(f"${{applied_{i}:-}}" for i in notifiers)
        lines.append(f'if [ -n "{applied}" ]; then echo \'{marker}STEP {index}\'')
        lines.append(f"( {handler_command(handler, changes, max(notifiers, default=-1))} ) 2>&1 < /dev/null")
        lines.append(f"rc=$?; echo '{marker}RC {index}' $rc; [ $rc -eq 0 ] || failed=1; fi")
    return "\n".join(lines) + "\n", marker


def handler_command(handler: Handler, changes: list[Change], last_notifier: int) -> str:
    """The handler's command, then each of its restarts, skipping a service whose start was
    applied after the last change that notified it (Handler's rule)."""
    steps = [handler.run] if handler.run else []
    for service in handler.restarts:
        started = [i for i, c in enumerate(changes) if i > last_notifier and service.starts(c)]
        skip = f'[ -n "${{applied_{started[0]}:-}}" ] || ' if started else ""
        steps.append(f"{skip}{{ {service.restart}; }}")
    return " && ".join(f"{{ {step}; }}" for step in steps) or "true"


@dataclass(frozen=True)
class StepResult:
    index: int
    rc: int
    output: str


def parse_apply_output(output: str, marker: str) -> list[StepResult]:
    """The steps that ran, with exit code and output."""
    results: list[StepResult] = []
    buffer: list[str] = []
    for line in output.splitlines():
        if line.startswith(f"{marker}STEP "):
            buffer = []
        elif line.startswith(f"{marker}RC "):
            _, index, rc = line[len(marker):].split()
            results.append(StepResult(int(index), int(rc), "\n".join(buffer)))
        else:
            buffer.append(line)
    return results
