"""Rolling deploy of the one-box app fleet under GET load: duration and failed requests.

    python bench/deploy.py            # the one-box must be up (`ops up`)

Goal (issue 7): ≤ 30 s and 0 failed requests. The deploy restarts app-0, then app-1 (each out
of nginx's rotation while it restarts), then the Celery worker (warm shutdown).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ops.stack import Stack  # noqa: E402
from tests.drills.deploy_drill import deploy_under_load  # noqa: E402


def main() -> None:
    stack = Stack.load("onebox")
    stack.prepare()
    run = deploy_under_load(stack)
    for name, seconds in run.log.steps:
        print(f"  {seconds:6.2f}s  {name}")
    print(f"deploy {run.log.version}: {run.log.seconds:.1f} s (goal ≤ 30 s)")
    print(f"load: {run.load.describe()} (goal 0 failed)")
    print(f"GETs/s during the deploy: {run.load.total / run.load.seconds:.0f}")


if __name__ == "__main__":
    main()
