"""The lab on this machine: image build (cold and cached), `ops --stack lab up`, each host's boot and
first-boot user_data (until every host is green), the lab's memory once green (what its hosts and
services hold: the proportional set size of every process in the lab's cgroups), the load balancer
stand-in taking the nginx hosts in, and a no-op converge of every lab host through the AWS path.

Goals on 2 cores: lab up from a cached image <= 10 min (until every host has converged); no-op
converge of the whole lab <= 3 s. Run as root under the lab lock: flock /tmp/lab.lock python bench/lab.py
(`--cold` also times a cold image build in a scratch cache dir; `--keep` leaves the lab up, for lab
tests with PHOTOSTACK_LAB_KEEP=1 under the same lock, then `ops --stack lab down`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.config import load_stack_config  # noqa: E402
from lab import fleet, hosts, image, lb  # noqa: E402
from lab.planned_instances import lab_plan  # noqa: E402

STACK = "lab"
FIRST_BOOT_TIMEOUT_S = 1800
LB_TIMEOUT_S = 120


def timed_build(cache: Path | None) -> float:
    if cache is not None:
        os.environ["PHOTOSTACK_LAB_CACHE"] = str(cache)
    start = time.perf_counter()
    image.build()
    os.environ.pop("PHOTOSTACK_LAB_CACHE", None)
    return time.perf_counter() - start


def memory_mib(*parts: str) -> float:
    """The proportional set size (shared pages split among their users, so the hosts' sum is the
    machine's) of every process in a lab cgroup, in MiB."""
    kib = 0
    for pid in hosts.cgroup_pids("unified", *parts):
        try:
            kib += int(re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.M).group(1))
        except (OSError, AttributeError):  # gone meanwhile, or a kernel thread
            pass
    return kib / 1024


def main() -> None:
    if "--cold" in sys.argv:
        with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
            print(f"image build, cold:    {timed_build(Path(scratch)):7.1f} s")
    print(f"image build, cached:  {timed_build(None):7.3f} s")
    config = load_stack_config(STACK)
    fleet.down()
    try:
        start = time.perf_counter()
        report = fleet.up(config, STACK)
        print(f"lab up (hosts answer SSH): {report.total_s:7.1f} s, {len(report.boot_s)} hosts, {len(report.failed)} failed")
        for name, seconds in report.boot_s.items():
            print(f"  boot {name:<22} {seconds:5.1f} s")
        results = fleet.wait_first_boots(list(report.boot_s), FIRST_BOOT_TIMEOUT_S)
        green = sum(1 for result in results.values() if result and result[0] == 0)
        print(f"lab up until every host ran its user_data: {time.perf_counter() - start:7.1f} s "
              f"({green} of {len(results)} exit 0)")
        for name, result in results.items():
            state = "still running" if result is None else f"exit {result[0]} after {result[1]:.1f} s"
            print(f"  user_data {name:<17} {state}")
        print(f"lab memory once green: {memory_mib():7.0f} MiB (load average {os.getloadavg()[0]:.1f})")
        for name in results:
            print(f"  memory {name:<20} {memory_mib(name):5.0f} MiB")
        nginx = [i.node for i in lab_plan(config, STACK).instances if i.role == "nginx"]
        deadline = time.monotonic() + LB_TIMEOUT_S
        while time.monotonic() < deadline and any(lb.server_states().get(n) != "UP" for n in nginx):
            time.sleep(0.5)
        print(f"lab up until the load balancer has every nginx host in: {time.perf_counter() - start:7.1f} s "
              f"({lb.server_states()})")
        gateway = str(next(ipaddress.ip_network(config.vpc_cidr).hosts()))
        env = {**os.environ, **fleet.aws_environment(gateway, config.region), "AWS_ACCESS_KEY_ID": "lab-operator",
               "AWS_SECRET_ACCESS_KEY": "lab-operator", "PHOTOSTACK_SSH_KEY": str(fleet.operator_key()),
               "PHOTOSTACK_STATE_DIR": tempfile.mkdtemp(prefix="lab-bench-")}
        ops = [sys.executable, "-m", "ops", "--stack", STACK, "converge"]
        subprocess.run(ops, env=env, capture_output=True)  # pins the host keys; converges what is left
        start = time.perf_counter()
        check = subprocess.run(ops, env=env, capture_output=True, text=True)
        print(f"no-op converge of every lab host: {time.perf_counter() - start:5.2f} s (exit {check.returncode})")
    finally:
        if "--keep" not in sys.argv:
            fleet.down()
            left = hosts.leftovers()
            print("lab down: " + ("nothing left" if not left else "; ".join(left)))


if __name__ == "__main__":
    main()
