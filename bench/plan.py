"""Offline plan time: onebox, staging, prod, and synthetic stacks of ~500 and ~2,000 resources.

Goals: prod (>= 300 resources) <= 3 s; 2,000 resources <= 10 s; time grows linearly.
Synthetic stacks are prod with more app servers (each adds an instance and its recovery alarm).
Run: python bench/plan.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.config import StackConfig, load_stack_config  # noqa: E402
from infra.offline_plan import run_plan  # noqa: E402
from infra.policy.evaluate import evaluate  # noqa: E402

RESOURCES_PER_APP_HOST = 2


def with_app_hosts(config: StackConfig, count: int) -> StackConfig:
    """`config` with `count` app servers."""
    app = config.fleets.app.model_copy(update={"count": count})
    return config.model_copy(update={"fleets": config.fleets.model_copy(update={"app": app})})


def timed(config: StackConfig, stack: str) -> tuple[int, float, float]:
    """Resources, plan seconds and policy seconds of one offline plan."""
    start = time.perf_counter()
    plan = run_plan(config, stack)
    planned = time.perf_counter()
    violations = evaluate(plan)
    if violations:
        raise SystemExit(f"{stack}: policy violations: {violations[0]}")
    return len(plan.resources), planned - start, time.perf_counter() - planned


def _marginal(small: tuple[int, float], large: tuple[int, float]) -> float:
    return 1000 * (large[1] - small[1]) / (large[0] - small[0])


def main() -> None:
    prod = load_stack_config("prod")
    start = time.perf_counter()
    load_stack_config("onebox")
    print(f"{'onebox':<16} {0:>9} {time.perf_counter() - start:8.3f} s   (config only: no cloud resources)")
    timed(load_stack_config("staging"), "staging")  # warm-up: provider modules import lazily
    rows = []
    base, _, _ = timed(prod, "prod")
    for label, config, stack in [
        ("staging", load_stack_config("staging"), "staging"),
        ("prod", prod, "prod"),
        ("synthetic-500", with_app_hosts(prod, prod.fleets.app.count + (500 - base) // RESOURCES_PER_APP_HOST), "synthetic"),
        ("synthetic-2000", with_app_hosts(prod, prod.fleets.app.count + (2000 - base) // RESOURCES_PER_APP_HOST), "synthetic"),
    ]:
        count, plan_s, policy_s = timed(config, stack)
        rows.append((label, count, plan_s))
        print(f"{label:<16} {count:>9} {plan_s:8.3f} s   {1000 * plan_s / count:6.2f} ms/resource   policies {policy_s:6.3f} s")
    # Marginal cost of the resources added between two sizes (same mix: app hosts), so the ratio
    # compares like with like; 1.00 means linear growth.
    sizes = {label: (count, seconds) for label, count, seconds in rows}
    low = _marginal(sizes["prod"], sizes["synthetic-500"])
    high = _marginal(sizes["synthetic-500"], sizes["synthetic-2000"])
    print(f"linearity: ms per added resource prod->500 {low:.2f}, 500->2000 {high:.2f}, ratio {high / low:.2f} (1.00 = linear)")
    prod_s = next(s for label, _, s in rows if label == "prod")
    big_s = next(s for label, _, s in rows if label == "synthetic-2000")
    print(f"goals: prod {prod_s:.2f} s <= 3 s: {'met' if prod_s <= 3 else 'MISSED'}; "
          f"2000 resources {big_s:.2f} s <= 10 s: {'met' if big_s <= 10 else 'MISSED'}")


if __name__ == "__main__":
    main()
