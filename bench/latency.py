"""Latencies no test asserts (tests assert behaviour, never a duration): Munin plugin start-up and
the app's /health.

Prints figures; it is not a test. Needs the one-box up (`make up`). Goals:
- a photostack Munin plugin answers `fetch` within 200 ms, interpreter start-up included
  (munin-node starts one process per plugin on every poll);
- /health answers in under 5 ms (median) through nginx: the load balancer and the health
  watcher probe it all the time, so it must stay cheap.
"""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ops.stack import Stack  # noqa: E402

PLUGINS = ROOT / "monitoring" / "agents" / "munin" / "plugins"
PLUGIN_RUNS = 11
HEALTH_REQUESTS = 500


def plugin_seconds(stack: Stack) -> list[float]:
    """Wall time of `photos_per_second` runs against the one-box Redis primary."""
    box = stack.config.onebox
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(PLUGINS.parent), "host": box.address,
           "port": str(box.redis_base_port), "password": stack.secret("redisPassword")}
    times = []
    for _ in range(PLUGIN_RUNS):
        started = time.perf_counter()
        subprocess.run([sys.executable, str(PLUGINS / "photos_per_second")], env=env, check=True,
                       capture_output=True, timeout=10)
        times.append(time.perf_counter() - started)
    return times


def health_seconds(stack: Stack) -> list[float]:
    """Latency of GET /health through nginx on one keep-alive connection (200s only)."""
    box = stack.config.onebox
    conn = http.client.HTTPConnection(box.address, box.http_port, timeout=10)
    times = []
    try:
        for _ in range(HEALTH_REQUESTS + 1):
            started = time.perf_counter()
            conn.request("GET", "/health")
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"/health answered {response.status}: is the one-box healthy (`ops status`)?")
            times.append(time.perf_counter() - started)
    finally:
        conn.close()
    return times[1:]  # the first request opens the app's pools


def main() -> None:
    stack = Stack.load("onebox")
    plugin = plugin_seconds(stack)
    print(f"munin plugin photos_per_second, {PLUGIN_RUNS} runs: median {statistics.median(plugin) * 1000:.0f} ms, "
          f"max {max(plugin) * 1000:.0f} ms  (goal: median < 200 ms)")
    health = health_seconds(stack)
    p99 = statistics.quantiles(health, n=100)[98]
    print(f"/health through nginx, {HEALTH_REQUESTS} requests: median {statistics.median(health) * 1000:.2f} ms, "
          f"p99 {p99 * 1000:.2f} ms  (goal: median < 5 ms)")


if __name__ == "__main__":
    main()
