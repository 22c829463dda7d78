"""The booted lab, shared by every lab test of a session (it takes minutes to boot: once is enough).

Lab tests run as root under `flock /tmp/lab.lock`. `lab` boots the plan of Pulumi.lab.yaml with
`ops --stack lab up` the first time a test asks for it and removes it (checked to leave nothing)
at the end of the session; a test that takes the lab down itself says so (`LabSession.down`), and
the next test that needs it boots it again. `lab_booted` waits for every host's first boot;
`lab_client` makes users' clients through the lab's load balancer (the ALB stand-in).

With `PHOTOSTACK_LAB_KEEP=1` the tests use the lab that is up (booted with `ops --stack lab up`
under the lab lock, which the caller holds throughout) and leave it up: for writing lab tests
and drills without a boot per run.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.config import StackConfig, load_stack_config
from lab import fleet, hosts, lb
from lab.planned_instances import LabPlan, lab_plan
from tests.e2e.conftest import Client

STACK = "lab"
LOCK = "/tmp/lab.lock"
OPS_TIMEOUT_S = 600
# Every host's user_data, converges retried while peers boot, on a loaded 2-core machine.
FIRST_BOOT_TIMEOUT_S = 900
KEEP = os.environ.get("PHOTOSTACK_LAB_KEEP") == "1"


def ops(*args: str, env: dict[str, str] | None = None, timeout: float = OPS_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """`ops --stack lab ARGS` as the operator runs it."""
    return subprocess.run([sys.executable, "-m", "ops", "--stack", STACK, *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def operator_environment(state: Path) -> dict[str, str]:
    """The operator's settings for the AWS path against the lab (its AWS endpoint, key, state dir)."""
    config = load_stack_config(STACK)
    gateway = str(next(ipaddress.ip_network(config.vpc_cidr).hosts()))
    return {**fleet.aws_environment(gateway, config.region), "AWS_ACCESS_KEY_ID": "lab-operator",
            "AWS_SECRET_ACCESS_KEY": "lab-operator", "PHOTOSTACK_SSH_KEY": str(fleet.operator_key()),
            "PHOTOSTACK_STATE_DIR": str(state)}


def operator_client(service: str) -> Any:
    """A boto3 client of the lab's AWS as the operator (`ops`) has it."""
    import boto3

    env = operator_environment(Path("/nonexistent"))  # no state needed for API calls
    return boto3.client(service, endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def instance_of(node: str) -> str:
    """The id of the node's running instance in the lab's AWS."""
    (found,) = [i["InstanceId"] for r in operator_client("ec2").describe_instances(Filters=[
        {"Name": "tag:photostack:node", "Values": [node]}, {"Name": "instance-state-name", "Values": ["running"]},
    ])["Reservations"] for i in r["Instances"]]
    return found


def boot_log(node: str) -> str:
    """The end of a host's user_data log (what its boot printed)."""
    log = hosts.host_dir(node) / "upper/var/log/photostack-bootstrap.log"
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no bootstrap log)"


class LabSession:
    """The lab of this test session: booted on first use, its first boots awaited once."""

    def __init__(self) -> None:
        self.config: StackConfig = load_stack_config(STACK)
        self.plan: LabPlan = lab_plan(self.config, STACK)
        self.result: subprocess.CompletedProcess[str] | None = None
        self.first_boots: dict[str, tuple[int, float] | None] | None = None

    def up(self) -> subprocess.CompletedProcess[str]:
        if self.result is None and KEEP:
            self.result = subprocess.CompletedProcess(["kept"], 0, "".join(
                f"{i.node} up in (kept)\n" for i in self.plan.instances) + f"{len(self.plan.instances)} host(s) up, 0 failed\n", "")
        if self.result is None:
            assert ops("down").returncode == 0
            self.result = ops("up")
        return self.result

    def booted(self) -> dict[str, tuple[int, float] | None]:
        """node → (user_data exit status, seconds), or None for a host still booting at the timeout."""
        result = self.up()
        assert result.returncode == 0, result.stdout + result.stderr
        if self.first_boots is None:
            self.first_boots = fleet.wait_first_boots([i.node for i in self.plan.instances], FIRST_BOOT_TIMEOUT_S)
        return self.first_boots

    def green(self) -> LabSession:
        """The lab with every host's user_data exited 0 (tests that use the stack need it)."""
        failed = {node: result for node, result in self.booted().items() if not result or result[0]}
        assert not failed, "hosts not green: " + "; ".join(f"{n}: {r}\n{boot_log(n)}" for n, r in failed.items())
        return self

    def client_factory(self) -> Callable[[], Client]:
        """A factory of users' clients through the load balancer stand-in: HTTPS trusting the lab
        CA, the stack's domain as Host, as browsers reach the ALB, each user from an address of
        their own (the app limits sign-ups and log-ins per client address)."""
        balancer = fleet.load_balancer(self.plan, self.config)
        context = ssl.create_default_context(cafile=str(lb.ca_certificate()))
        taken = {balancer.address, fleet.aws_tls_address(self.plan, self.config), *fleet.taken_addresses(self.plan)}
        pool = (str(a) for a in reversed(list(self.plan.network.hosts())) if str(a) not in taken)

        def make() -> Client:
            source = next(pool)
            # On the lab bridge beside its gateway address (gone with the bridge at `down`).
            hosts.run("ip", "address", "replace", f"{source}/32", "dev", hosts.BRIDGE)
            return Client(f"https://{balancer.address}", host=self.config.domain, context=context, source=source)

        return make

    def down(self) -> None:
        self.result = self.first_boots = None
        down = ops("down")
        assert down.returncode == 0, down.stderr


def lock_inherited() -> bool:
    """Whether this process runs under `flock /tmp/lab.lock …` (it inherited the locked file):
    taking the lock again through a new open file would wait for ourselves for ever."""
    fds = Path("/proc/self/fd")
    return any(os.path.realpath(fd) == LOCK for fd in fds.iterdir() if fd.is_symlink())


@pytest.fixture(scope="session")
def lab_lock() -> Iterator[None]:
    if KEEP or lock_inherited():  # the caller holds the lock around us
        yield
        return
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def lab(lab_lock: None) -> Iterator[LabSession]:
    """The session's lab (not booted until a test asks); removed at the end, leaving nothing."""
    session = LabSession()
    yield session
    if not KEEP:
        session.down()
        assert hosts.leftovers() == []


@pytest.fixture
def lab_up(lab: LabSession) -> subprocess.CompletedProcess[str]:
    """`ops --stack lab up`'s result (every host booting)."""
    return lab.up()


@pytest.fixture
def lab_booted(lab: LabSession) -> dict[str, tuple[int, float] | None]:
    """Every host's first boot finished: node → (exit status, seconds)."""
    return lab.booted()


@pytest.fixture
def lab_green(lab: LabSession) -> LabSession:
    """The lab with every host's user_data exited 0 (tests that use the stack need it)."""
    return lab.green()


@pytest.fixture
def lab_client(lab_green: LabSession) -> Callable[[], Client]:
    """A factory of users' clients through the load balancer stand-in (LabSession.client_factory)."""
    return lab_green.client_factory()
