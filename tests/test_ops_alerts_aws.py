"""`ops alerts` and `ops status` on an AWS stack read the monitoring host's alert store, not the
operator's state dir, over the very path `ops` takes to AWS hosts: the inventory from EC2 tags,
host keys pinned from GetConsoleOutput, SSH through the bastion, `sudo -n` on the host.

The AWS APIs are the lab's stand-in (moto over HTTP, with consoles and public addresses the test
chooses); the bastion and the monitoring host are two real sshd processes on loopback addresses,
port 22, in a mount namespace of their own that has the `ubuntu` login of an Ubuntu image and its
own /var/lib (the monitoring host's disk, holding a real alert store). The CLI runs in a
subprocess like an operator's."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.alerts import Alert, dedup_key, resolve_event, trigger_event
from infra.host_layout import BUNDLE_DIR, OPS_VENV
from infra.host_layout import STATE_ROOT as HOST_STATE_ROOT
from monitoring.alerts.alert_store import SPOOL_DIR, AlertStore

REPO = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
STACK = "staging"
MONITOR = "munin_master-0"
SSHD = "/usr/sbin/sshd"
BEGIN, END = "-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not Path(SSHD).exists(),
                                reason="needs root, unshare and sshd (a mount namespace plays the hosts)")


@dataclass
class Fleet:
    """The stack's AWS stand-in and its two hosts."""

    endpoint: str
    ids: dict[str, str]
    client_key: Path
    host_disk: Path  # the monitoring host's /var/lib


def _free_loopback_pair() -> str:
    """A 127.x.y prefix whose .11 and .12 nobody listens on at port 22."""
    for _ in range(50):
        prefix = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}"
        try:
            for last in (11, 12):
                with socket.socket() as probe:
                    probe.bind((f"{prefix}.{last}", 22))
        except OSError:
            continue
        return prefix
    raise RuntimeError("no free loopback address for the test's sshd")


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _sshd_config(work: Path, name: str, address: str, forwarding: bool) -> Path:
    """An Ubuntu image's sshd as far as `ops` sees it: `ubuntu` with the operator's key, port 22;
    the bastion forwards to the hosts behind it."""
    path = work / f"{name}_config"
    path.write_text(f"""Port 22
ListenAddress {address}
HostKey {work / name}
PidFile {work / name}.pid
AuthorizedKeysFile {work / 'authorized_keys'}
AllowUsers ubuntu
PermitRootLogin prohibit-password
AllowTcpForwarding {'yes' if forwarding else 'no'}
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel ERROR
""")
    return path


def _wait_listening(pid_file: Path, address: str) -> None:
    """Until the daemon accepts connections and its pid file is written (sshd forks first)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection((address, 22), timeout=1):
                pass
            int(pid_file.read_text())
            return
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _console(keys: str) -> str:
    return f"[  9.1] cloud-init[700]: modules:final\n{BEGIN}\n{keys} root@host\n{END}\n"


@pytest.fixture(scope="module")
def fleet(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Starts from an empty moto account (the moto_endpoint fixture resets this process's moto,
    which the stand-in shares) and stops its sshd processes by the pids they wrote."""
    from lab.aws import start

    work = tmp_path_factory.mktemp("hosts")
    prefix = _free_loopback_pair()
    bastion_public, monitor_address = f"{prefix}.11", f"{prefix}.12"
    client_key = work / "operator"
    operator = _keygen(client_key)
    (work / "authorized_keys").write_text(operator + "\n")
    # The image's login: `ubuntu`, whose `sudo -n` is root (uid 0 stands in for its sudo rule).
    home = work / "home"
    home.mkdir()
    passwd = work / "passwd"
    passwd.write_text(Path("/etc/passwd").read_text() + f"ubuntu:x:0:0:Ubuntu:{home}:/bin/bash\n")
    disk = work / "var-lib"
    (disk / "photostack").mkdir(parents=True)
    plugins = work / "no-plugins"  # the monitoring host's munin plugins: none (status reads them)
    plugins.mkdir()
    consoles = work / "consoles"
    configs = []
    for node, address, forwarding in (("bastion", bastion_public, True), (MONITOR, monitor_address, False)):
        (consoles / node).mkdir(parents=True)
        (consoles / node / "console.log").write_text(_console(_keygen(work / node)))
        configs.append(_sshd_config(work, node, address, forwarding))
    # What the host's user_data installs (infra/host_layout.py): the ops venv (this test's) and
    # the unpacked release (this checkout), which `ops alert-flush` runs there.
    opt = work / "opt"
    (opt / "photostack").mkdir(parents=True)
    (opt / "photostack" / Path(OPS_VENV).name).symlink_to(sys.prefix)
    (opt / "photostack" / Path(BUNDLE_DIR).name).symlink_to(REPO)
    mounts = (f"mount --bind {passwd} /etc/passwd && mount --bind {disk} /var/lib && mount --bind {opt} /opt && "
              f"{{ [ ! -d /etc/munin/plugins ] || mount --bind {plugins} /etc/munin/plugins; }}")
    start_both = " && ".join(f"{SSHD} -f {c}" for c in configs)
    seed = {
        "vpc_cidr": f"{prefix.rsplit('.', 1)[0]}.0.0/16",
        "subnets": [{"name": "net", "cidr": f"{prefix}.0/24", "az": "us-east-1a"}],
        "roles": [], "role_policies": [], "profiles": [], "parameters": [], "buckets": [], "objects": [],
        "volumes": [], "attachments": [],
        "translate": {},
        "instances": [
            {"node": node, "subnet": "net", "private_ip": private, "public_ip": public, "user_data": None,
             "tags": {"photostack:stack": STACK, "photostack:role": role, "photostack:node": node},
             "image_id": "ami-12345678", "instance_type": "t3.small", "profile": None}
            for node, role, private, public in (("bastion", "bastion", f"{prefix}.10", bastion_public),
                                                (MONITOR, "munin_master", monitor_address, None))
        ],
    }
    running = None
    try:
        subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                        f"mkdir -p /run/sshd && {mounts} && {start_both}"], check=True, timeout=30)
        for node, address in (("bastion", bastion_public), (MONITOR, monitor_address)):
            _wait_listening(work / f"{node}.pid", address)
        running = start({"region": REGION, "address": "127.0.0.1", "api_port": 0, "metadata_port": 0,
                         "secret_seed": "alerts-test", "ssh_public_key": operator, "consoles": str(consoles),
                         "calls": str(work / "calls.jsonl"), "seed": seed})
        yield Fleet(f"http://127.0.0.1:{running.api_port}", running.ids, client_key, disk)
    finally:
        if running is not None:
            running.stop()
        for node in ("bastion", MONITOR):  # whichever started
            if (work / f"{node}.pid").exists():
                os.kill(int((work / f"{node}.pid").read_text()), signal.SIGTERM)


def _env(fleet: Fleet, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PHOTOSTACK_"))}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION,
               AWS_ENDPOINT_URL=fleet.endpoint, AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), PHOTOSTACK_STATE_DIR=str(tmp_path / "state"),
               PHOTOSTACK_SSH_KEY=str(fleet.client_key), PYTHONPATH=str(REPO), COLUMNS="300")
    return env


def _ops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ops", "--stack", STACK, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*"))}


@pytest.fixture
def monitor_store(fleet: Fleet) -> Iterator[AlertStore]:
    """The monitoring host's alert store, where its alert hooks keep it (infra/state.py), written
    as the hooks write it: one open critical, one resolved, one event waiting in the spool."""
    directory = fleet.host_disk / HOST_STATE_ROOT.relative_to("/var/lib") / STACK
    directory.mkdir(mode=0o700)
    store = AlertStore(directory)
    redis = Alert(STACK, "redis-0", "redis", "used_memory", "critical", "9e10")
    lag = Alert(STACK, "postgres-1-replica", "postgres_replication", "lag_bytes", "warning", "2e7")
    with store.locked():
        store.mark_open(redis.dedup_key, "critical")
        store.log("sent", trigger_event(redis, "https://runbooks.example.com", STACK))
        store.mark_open(lag.dedup_key, "warning")
        store.mark_resolved(lag.dedup_key)
        store.log("sent", resolve_event(lag.dedup_key))
        store.spool(trigger_event(lag, "https://runbooks.example.com", STACK))
    yield store
    shutil.rmtree(directory)


def test_ops_alerts_shows_the_monitoring_hosts_open_alerts_and_writes_nothing(fleet, monitor_store, tmp_path):
    env = _env(fleet, tmp_path)
    before = _snapshot(monitor_store.directory)

    done = _ops(env, "alerts", "--json")

    assert done.returncode == 0, done.stdout + done.stderr
    shown = json.loads(done.stdout)
    assert shown["open"] == [dedup_key(STACK, "redis-0", "redis", "used_memory")]
    assert [(r["status"], r["action"]) for r in shown["history"]] == [("sent", "trigger"), ("sent", "resolve")]
    (queued,) = shown["queued"]
    assert queued["event"]["dedup_key"] == dedup_key(STACK, "postgres-1-replica", "postgres_replication", "lag_bytes")
    # Read only: the host's store is byte for byte and time for time as it was (no lock file either),
    # and nothing of an alert store appeared on the operator's side.
    assert _snapshot(monitor_store.directory) == before
    local = tmp_path / "state" / STACK
    assert sorted(p.name for p in local.iterdir()) == ["host_keys.json", "known_hosts"]
    pinned = json.loads((local / "host_keys.json").read_text())
    assert set(pinned) == set(fleet.ids.values())  # both hosts' keys, from their consoles

    limited = json.loads(_ops(env, "alerts", "--json", "--limit", "1").stdout)
    assert [r["action"] for r in limited["history"]] == ["resolve"]
    table = _ops(env, "alerts")
    assert table.returncode == 0 and table.stdout.splitlines()[-1] == f"1 open: {shown['open'][0]}", table.stdout


def test_ops_status_lists_the_monitoring_hosts_open_alerts(fleet, monitor_store, tmp_path):
    done = _ops(_env(fleet, tmp_path), "status", "--json")
    shown = json.loads(done.stdout)
    assert shown["openAlerts"] == [dedup_key(STACK, "redis-0", "redis", "used_memory")], done.stderr
    assert shown["openAlertsUnread"] is None


def test_a_store_others_could_write_is_not_read_as_root(fleet, monitor_store, tmp_path):
    monitor_store.directory.chmod(0o777)
    done = _ops(_env(fleet, tmp_path), "alerts", "--json")
    assert done.returncode == 1 and done.stdout == ""
    said = " ".join(done.stderr.split())
    assert said == (f"error: {MONITOR}: read the alert state in {HOST_STATE_ROOT / STACK}: "
                    "not owned and writable by root alone: not read")


def test_without_alerts_yet_none_are_open(fleet, tmp_path):
    done = _ops(_env(fleet, tmp_path), "alerts", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"stack": STACK, "open": [], "queued": [], "history": []}



def test_ops_alert_flush_sends_the_monitoring_hosts_spool_from_there(fleet, monitor_store, pagerduty_server,
                                                                    test_certificates, tmp_path):
    """The spooled event goes to PagerDuty from the monitoring host, through the pipeline its
    hooks run (here pointed at the local Events API by the host's endpoint override); the
    operator's state dir gets no alert store, the trail every operator reads gets the command."""
    from monitoring.alerts.alert_pipeline import OVERRIDE_FILE
    from ops import audit

    [(queued, _)] = [(item.event["dedup_key"], item) for item in monitor_store.spooled()]
    override = monitor_store.directory / OVERRIDE_FILE
    override.write_text(json.dumps({"url": pagerduty_server.url, "ca": str(test_certificates.ca_bundle),
                                    "routing_key": "R" * 32}))
    env = _env(fleet, tmp_path)
    planned = _ops(env, "alert-flush", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert f"send 1 spooled event(s) to PagerDuty, oldest first, from {MONITOR}" in planned.stdout
    assert pagerduty_server.events == [] and len(monitor_store.spooled()) == 1
    done = _ops(env, "alert-flush")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "sent 1, rejected 0, still queued 0"
    assert [e["dedup_key"] for e in pagerduty_server.events] == [queued]
    assert monitor_store.spooled() == []
    assert not list((tmp_path / "state").rglob(SPOOL_DIR)), "the laptop's spool was used"
    import boto3

    logs = boto3.client("logs", endpoint_url=fleet.endpoint, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing")
    [entry] = audit.LogsTrail(logs, STACK).read(10)
    assert (entry.command, entry.outcome) == ("alert-flush", "ok")
