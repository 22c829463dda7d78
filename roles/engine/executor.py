"""Run plans on hosts over SSH (Fabric): facts in one round trip, then apply, then handlers.

Hosts run in parallel; one failing host never hides another's result.
"""

from __future__ import annotations

import io
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import invoke
import paramiko
from fabric import Config, Connection

from roles.engine.changes import Plan, apply_script, fact_script, make_plan, parse_apply_output
from roles.engine.resources import Change, DesiredState


class Host(Protocol):
    """What the engine needs of a machine to reach it (photostack's infra.inventory.Host is one)."""

    @property
    def name(self) -> str:
        """How results name the host."""
        ...

    @property
    def address(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def user(self) -> str: ...

    @property
    def gateway(self) -> str | None:
        """"user@bastion:port" for a host only reachable through a bastion."""
        ...


@dataclass(frozen=True)
class SshSettings:
    """How to reach hosts: the private key, the pinned host keys, timeouts."""

    key_file: Path | None = None
    known_hosts: Path | None = None
    connect_timeout: float = 10.0
    local: bool = False  # run on this machine through Invoke instead of SSH (boot-time converge)


@dataclass
class HostResult:
    """The outcome of a converge (or a check) on one host: Ansible-style recap numbers and details."""

    host: Host
    ok: int = 0
    changed: list[Change] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    handlers_run: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def unreachable(self) -> bool:
        return any(what == "ssh" for what, _ in self.failed)


class LocalConnection:
    """This machine behind the same `run`/`put` as a Fabric Connection (Invoke's local Context)."""

    def __init__(self, config: Config):
        self.context = invoke.Context(config)

    def open(self) -> None:
        """Nothing to open: commands run here."""

    def run(self, command: str, **kwargs: object) -> invoke.Result:
        return self.context.run(command, **kwargs)

    def put(self, local: io.BytesIO, remote: str) -> None:
        Path(remote).write_bytes(local.getvalue())

    def __enter__(self) -> LocalConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def connect(host: Host, ssh: SshSettings) -> Connection | LocalConnection:
    """A Fabric connection to `host` that trusts only the pinned host keys (when given)."""
    config = Config(overrides={"load_ssh_configs": False, "run": {"hide": True, "warn": True}})
    if ssh.local:
        return LocalConnection(config)
    connect_kwargs: dict[str, object] = {"look_for_keys": False, "allow_agent": ssh.key_file is None}
    if ssh.key_file is not None:
        connect_kwargs["key_filename"] = str(ssh.key_file)
    gateway = None
    if host.gateway:
        user, _, rest = host.gateway.rpartition("@")
        address, _, port = rest.partition(":")
        gateway = _pinned(Connection(address, user=user or None, port=int(port or 22), config=config,
                                     connect_kwargs=dict(connect_kwargs), connect_timeout=ssh.connect_timeout), ssh)
    return _pinned(Connection(
        host.address,
        user=host.user,
        port=host.port,
        config=config,
        gateway=gateway,
        connect_kwargs=connect_kwargs,
        connect_timeout=ssh.connect_timeout,
    ), ssh)


def _pinned(conn: Connection, ssh: SshSettings) -> Connection:
    """Trust only the pinned host keys (the bastion hop's too): an unknown or changed key is refused."""
    if ssh.known_hosts is not None:
        conn.client.load_host_keys(str(ssh.known_hosts))
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return conn


# Store the script from stdin in a private temp file and run it with stdin closed, so that no
# command in it (rabbitmqctl, psql …) can read the rest of the script as its input.
RUN_STDIN = 'f=$(mktemp) && cat > "$f" && bash "$f" < /dev/null; rc=$?; rm -f "$f"; exit $rc'


def run_script(conn: Connection | LocalConnection, host: Host, script: str) -> tuple[int, str]:
    """Run a bash script on the host as root, fed on stdin; returns (exit code, stdout).

    One SSH exec, so one round trip. The script goes through stdin rather than the command
    line because it may carry secrets (a command line is visible to every user in `ps`), and
    is written in one piece on the channel: Invoke's `in_stream` feeds a non-tty stream a
    byte at a time with a sleep between (~7 ms per byte).
    """
    if isinstance(conn, LocalConnection):
        done = subprocess.run(["bash", "-c", RUN_STDIN], input=script, capture_output=True, text=True)
        return done.returncode, done.stdout
    sudo = "" if host.user == "root" else "sudo -n "
    conn.open()
    channel = conn.client.get_transport().open_session()
    try:
        channel.exec_command(f"{sudo}bash -c {shlex.quote(RUN_STDIN)}")
        channel.sendall(script.encode())
        channel.shutdown_write()
        stdout = channel.makefile("rb")
        channel.makefile_stderr("rb")  # stderr is drained by paramiko; scripts send what matters to stdout
        output = stdout.read().decode("utf-8", "replace")
        return channel.recv_exit_status(), output
    finally:
        channel.close()


def read_facts(conn: Connection, host: Host, state: DesiredState) -> list[str]:
    """Every fact of the desired state's resources, read in one round trip."""
    script = fact_script(state)
    code, output = run_script(conn, host, script.text)
    if code != 0:
        raise RuntimeError(f"fact script exited {code}")
    return script.parse(output, len(state.resources))


def gather(conn: Connection, host: Host, state: DesiredState) -> Plan:
    """Read the host's facts and compare them with the desired state."""
    return make_plan(state, read_facts(conn, host, state))


def apply(conn: Connection, host: Host, plan: Plan, result: HostResult) -> None:
    """Apply the plan's changes in order, then the handlers they notified; record what happened."""
    handlers = plan.notified_handlers(plan.changes)
    script, marker = apply_script(plan.changes, handlers)
    _, output = run_script(conn, host, script)
    steps = parse_apply_output(output, marker)
    for step in steps:
        if step.index < len(plan.changes):
            change = plan.changes[step.index]
            if step.rc == 0:
                result.changed.append(change)
            else:
                result.failed.append((change.resource, _last_lines(step.output)))
        else:
            handler = handlers[step.index - len(plan.changes)]
            if step.rc == 0:
                result.handlers_run.append(handler.name)
            else:
                result.failed.append((f"handler {handler.name}", _last_lines(step.output)))
    if not steps and plan.changes:
        result.failed.append(("apply", "apply script ran no step (connection lost?)"))


def _last_lines(text: str, count: int = 5) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "(no output)"


def converge_host(
    host: Host, state: DesiredState, ssh: SshSettings, check: bool = False
) -> tuple[HostResult, Plan | None]:
    """Converge one host (or only plan it with `check`). Never raises: failures land in the result."""
    started = time.monotonic()
    result = HostResult(host)
    plan: Plan | None = None
    try:
        with connect(host, ssh) as conn:
            try:
                conn.open()
            except Exception as exc:  # noqa: BLE001 — any connect failure means unreachable
                result.failed.append(("ssh", f"cannot reach {host.user}@{host.address}:{host.port}: {exc}"))
                return result, None
            plan = gather(conn, host, state)
            result.ok = plan.ok
            if check:
                result.changed = list(plan.changes)
            elif plan.changes:
                apply(conn, host, plan, result)
    except Exception as exc:  # noqa: BLE001 — one host's failure must not hide the others
        result.failed.append(("converge", f"{type(exc).__name__}: {exc}"))
    finally:
        result.seconds = time.monotonic() - started
    return result, plan


def converge_hosts(
    hosts: list[Host],
    state_for: Callable[[Host], DesiredState],
    ssh: SshSettings,
    check: bool = False,
    parallel: int = 32,
    progress: Callable[[HostResult], None] | None = None,
) -> list[HostResult]:
    """Converge many hosts in parallel; results in inventory order. `progress` hears of each
    host as it finishes (from the worker threads)."""

    def one(host: Host) -> HostResult:
        try:
            state = state_for(host)
        except Exception as exc:  # noqa: BLE001 — a role that cannot render fails its host only
            result = HostResult(host, failed=[("roles", f"{type(exc).__name__}: {exc}")])
        else:
            result = converge_host(host, state, ssh, check)[0]
        if progress is not None:
            progress(result)
        return result

    if len(hosts) <= 1:  # nothing to run in parallel (and a pool of 0 workers is an error)
        return [one(host) for host in hosts]
    with ThreadPoolExecutor(max_workers=min(parallel, len(hosts))) as pool:
        return list(pool.map(one, hosts))
