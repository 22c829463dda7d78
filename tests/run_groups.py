"""`make test`: the suite in groups, one after another, each shuffled, each against a time budget.

Groups never run at once (the one-box tests converge this machine, and the box has 2 cores); inside
a group pytest-randomly shuffles modules and the tests in each module with one seed, printed here
and by pytest, so a failing order can be replayed (a test marked `lab_teardown` still runs last:
tests/conftest.py):

    .venv/bin/python -m tests.run_groups --seed 1234 [--group unit] [-- extra pytest args]

A new seed is drawn on every run unless `--seed` (or PHOTOSTACK_TEST_SEED) gives one. At the end a
table shows each group's result and duration against its budget; the run fails when a group fails
(naming which), or when all groups together go over the run's hard limit; a group over its own
budget, or all of them over the run's budget, is flagged (and warned about) without failing the run.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NO_TESTS = 5  # pytest's exit code when the marker expression selects nothing


@dataclass(frozen=True)
class Group:
    """Tests selected by a marker expression, and how long CI lets them take."""

    name: str
    markers: str
    budget_s: int


# Every test is in exactly one group: the expressions partition the markers.
GROUPS = (
    Group("unit", "not onebox and not lab", 3 * 60),  # pure units, protocol fakes, throwaway servers
    # Shuffled too: every test on the shared one-box leaves it in its desired state (the drills'
    # `converged` fixture asserts a converge check finds nothing to change after each one).
    Group("one-box", "onebox and not drill", 8 * 60),  # the real one-box, converged by `ops up`
    Group("app drills", "drill", 5 * 60),  # faults under load on the one-box
    # The plan booted as systemd-nspawn hosts (lab/), then the fleet drills on them: one boot for both.
    Group("lab", "lab", 25 * 60),
)


# The whole run: set-up (packages, venv, image) comes on top, and CI wants all of it under 45 min:
# past the budget the run is flagged (and warned about), like a group past its own. Past the
# limit it fails: CI stops a run at 90 minutes, and a run that slow has lost the plot.
TOTAL_BUDGET_S = 40 * 60
TOTAL_LIMIT_S = 75 * 60


@dataclass(frozen=True)
class Outcome:
    group: Group
    exit_code: int
    seconds: float

    @property
    def passed(self) -> bool:
        return self.exit_code in (0, NO_TESTS)

    @property
    def over_budget(self) -> bool:
        return self.seconds > self.group.budget_s


def run_group(group: Group, seed: int, extra: list[str]) -> Outcome:
    """One pytest run of the group, shuffled with `seed`."""
    order = ["-p", "randomly", f"--randomly-seed={seed}"]
    print(f"\n=== {group.name}: -m '{group.markers}', seed {seed}, "
          f"budget {_minutes(group.budget_s)} ===", flush=True)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-m", group.markers, *order, *extra], cwd=REPO)
    return Outcome(group, done.returncode, time.monotonic() - started)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def report(outcomes: list[Outcome], seed: int) -> list[str]:
    """The summary table, and one line per problem (empty when the run passed)."""
    print(f"\n{'group':<12} {'result':<10} {'took':>6} {'budget':>7}")
    problems = []
    for o in outcomes:
        result = ("no tests" if o.exit_code == NO_TESTS else "passed") if o.passed else f"FAILED ({o.exit_code})"
        flag = "  OVER BUDGET" if o.over_budget else ""
        print(f"{o.group.name:<12} {result:<10} {_minutes(o.seconds):>6} {_minutes(o.group.budget_s):>7}{flag}")
        if not o.passed:
            problems.append(f"group {o.group.name} failed (pytest exit {o.exit_code})")
        if o.over_budget:  # a warning: one slow group on a busy machine must not fail CI alone
            print(f"warning: group {o.group.name} took {_minutes(o.seconds)}, over its budget of "
                  f"{_minutes(o.group.budget_s)}: speed it up or move tests out", file=sys.stderr)
    total = sum(o.seconds for o in outcomes)
    print(f"{'total':<12} {'':<10} {_minutes(total):>6} {_minutes(TOTAL_BUDGET_S):>7}")
    if total > TOTAL_LIMIT_S:
        problems.append(f"the groups took {_minutes(total)}, over the run's limit of {_minutes(TOTAL_LIMIT_S)} "
                        "(CI stops a run at 90 minutes and wants it under 45)")
    elif total > TOTAL_BUDGET_S:
        print(f"warning: the groups took {_minutes(total)}, over the run's budget of {_minutes(TOTAL_BUDGET_S)} "
              "(CI wants the whole run under 45 minutes): speed them up", file=sys.stderr)
    print(f"seed {seed}: replay with `.venv/bin/python -m tests.run_groups --seed {seed}`")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=os.environ.get("PHOTOSTACK_TEST_SEED"),
                        help="shuffle with this seed (default: a new one)")
    parser.add_argument("--group", action="append", choices=[g.name for g in GROUPS],
                        help="run only this group (repeatable)")
    parser.add_argument("pytest_args", nargs="*", help="passed to every pytest run (after --)")
    args = parser.parse_args(argv)
    seed = int(args.seed) if args.seed is not None else random.randrange(2**32)
    groups = [g for g in GROUPS if not args.group or g.name in args.group]
    outcomes = [run_group(group, seed, args.pytest_args) for group in groups]
    problems = report(outcomes, seed)
    for problem in problems:
        print(f"make test: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
