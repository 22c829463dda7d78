"""pgbench through pgbouncer vs straight to the shard's primary, read-only and with a small write mix.

Prints figures; it is not a test. Needs the one-box up (`make up`). Both runs share this
machine's CPUs with Postgres, its replica and pgbouncer, so the ratio is what pooling costs in
round trips here, not what it buys in production (where it caps server connections).

- select-only: pgbench's built-in `select-only` (one primary-key SELECT per transaction).
- write mix: 9 parts select-only to 1 part `simple-update` (UPDATE + SELECT + INSERT), each write
  commit waiting for the synchronous replica.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.lib.primaries import primary_port  # noqa: E402
from ops.stack import Stack  # noqa: E402

SECONDS = 10
CLIENTS = 16
SCALE = 10
MIXES = {"select-only": ["-b", "select-only"], "write mix 9:1": ["-b", "select-only@9", "-b", "simple-update@1"]}


def pgbench(stack: Stack, port: int, args: list[str]) -> subprocess.CompletedProcess:
    box = stack.config.onebox
    env = {**os.environ, "PGPASSWORD": stack.secret("dbPassword")}
    command = ["pgbench", "-h", box.address, "-p", str(port), "-U", "photostack", *args, "shard0"]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=True)


def tps(output: str) -> float:
    match = re.search(r"tps = ([\d.]+)", output)
    if not match:
        raise RuntimeError(f"no tps in pgbench output:\n{output}")
    return float(match.group(1))


def main() -> None:
    stack = Stack.load("onebox")
    box = stack.config.onebox
    direct = primary_port(stack, 0)
    pgbench(stack, direct, ["-i", "-q", "-s", str(SCALE)])
    try:
        print(f"pgbench on shard0, {CLIENTS} clients, {SECONDS} s per run, scale {SCALE}")
        for name, mix in MIXES.items():
            run = ["-c", str(CLIENTS), "-j", "2", "-T", str(SECONDS), "-n", *mix]
            pooled = tps(pgbench(stack, box.pgbouncer_port, run).stdout)
            straight = tps(pgbench(stack, direct, run).stdout)
            print(f"  {name:<14} pgbouncer {pooled:>9,.0f} tps   direct {straight:>9,.0f} tps   "
                  f"ratio {pooled / straight:.2f}")
    finally:
        pgbench(stack, direct, ["-i", "-I", "d"])


if __name__ == "__main__":
    main()
