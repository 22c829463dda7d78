"""The lab, booted for real from the plan of Pulumi.lab.yaml (root; run under `flock /tmp/lab.lock`).

`ops --stack lab up` boots one systemd-nspawn host per planned instance; `ops --stack lab status`
then takes the AWS path unchanged: the inventory from EC2 tags (the lab's moto), host keys pinned
from each instance's console output, SSH through the bastion. `ops --stack lab down` leaves
nothing behind, also after an `up` killed half-way.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.config import load_stack_config
from lab import fleet, hosts
from lab.plan import lab_plan

pytestmark = pytest.mark.lab
STACK = "lab"
LOCK = "/tmp/lab.lock"
OPS_TIMEOUT_S = 600
# Every host's user_data, converges retried while peers boot, on a loaded 2-core machine.
FIRST_BOOT_TIMEOUT_S = 900


def ops(*args: str, env: dict[str, str] | None = None, timeout: float = OPS_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ops", "--stack", STACK, *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def lab_lock() -> Iterator[None]:
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def lab_up(lab_lock: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.CompletedProcess[str]]:
    """The lab booted; removed afterwards (and checked to leave nothing)."""
    assert ops("down").returncode == 0
    result = ops("up")
    yield result
    down = ops("down")
    assert down.returncode == 0, down.stderr
    assert hosts.leftovers() == []


def operator_environment(state: Path) -> dict[str, str]:
    config = load_stack_config(STACK)
    gateway = str(next(ipaddress.ip_network(config.vpc_cidr).hosts()))
    return {**fleet.aws_environment(gateway, config.region), "AWS_ACCESS_KEY_ID": "lab-operator",
            "AWS_SECRET_ACCESS_KEY": "lab-operator", "PHOTOSTACK_SSH_KEY": str(fleet.operator_key()),
            "PHOTOSTACK_STATE_DIR": str(state)}


def test_up_boots_every_planned_instance(lab_up):
    assert lab_up.returncode == 0, lab_up.stdout + lab_up.stderr
    planned = [i.node for i in lab_plan(load_stack_config(STACK), STACK).instances]
    for node in planned:
        assert f"{node} " in lab_up.stdout and "up in" in lab_up.stdout
        assert hosts.cgroup_pids("unified", node), f"{node} has no running processes: {hosts.console_text(node)[-2000:]}"
    assert f"{len(planned)} host(s) up, 0 failed" in lab_up.stdout


def boot_log(node: str) -> str:
    """The end of a host's user_data log (what its boot printed)."""
    log = hosts.host_dir(node) / "upper/var/log/photostack-bootstrap.log"
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no bootstrap log)"


@pytest.fixture(scope="module")
def lab_booted(lab_up: subprocess.CompletedProcess[str]) -> dict[str, tuple[int, float] | None]:
    """Every host's first boot (user_data) finished: node → (exit status, seconds)."""
    assert lab_up.returncode == 0, lab_up.stdout + lab_up.stderr
    planned = [i.node for i in lab_plan(load_stack_config(STACK), STACK).instances]
    return fleet.wait_first_boots(planned, FIRST_BOOT_TIMEOUT_S)


def test_every_host_boots_green_from_its_user_data(lab_booted):
    """Each host, the app and worker hosts included, runs its rendered user_data to exit 0:
    bundle fetched, the release built with it installed (no git on a host), roles converged."""
    planned = {i.node: i.role for i in lab_plan(load_stack_config(STACK), STACK).instances}
    assert {"app", "worker", "nginx", "postgres"} <= set(planned.values())
    assert set(lab_booted) == set(planned)
    for node, result in lab_booted.items():
        assert result is not None, f"{node}: user_data still running after {FIRST_BOOT_TIMEOUT_S} s\n{boot_log(node)}"
        assert result[0] == 0, f"{node}: user_data exit {result[0]}\n{boot_log(node)}"


def test_status_takes_the_aws_path_with_pinned_keys(lab_up, tmp_path):
    result = ops("status", env=operator_environment(tmp_path))
    planned = [i for i in lab_plan(load_stack_config(STACK), STACK).instances if i.role != "bastion"]
    for instance in planned:
        assert instance.node in result.stdout, result.stdout + result.stderr
    known_hosts = (tmp_path / STACK / "known_hosts").read_text()
    for instance in planned:  # each pinned key is the one the host made at its first boot
        public = (hosts.host_dir(instance.node) / "upper/etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
        assert f"{instance.private_ip} {' '.join(public)}" in known_hosts


def test_down_after_an_interrupted_up_leaves_nothing(lab_lock):
    assert ops("down").returncode == 0
    process = subprocess.Popen([sys.executable, "-m", "ops", "--stack", STACK, "up"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(n != f"{hosts.PREFIX}-bastion" for n in hosts.lab_namespaces()):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert hosts.lab_namespaces(), "up was not interrupted while booting hosts"
    down = ops("down")
    assert down.returncode == 0, down.stderr
    assert hosts.leftovers() == []
    assert ops("down").returncode == 0  # and again: nothing to do is fine
