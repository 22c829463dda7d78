"""The ALB stand-in's members follow ELBv2 target registration in the lab's AWS.

Runs in the lab's AWS process (lab/aws.py), beside moto, whose target groups it reads in process:
each registered target (an instance id and port) is that instance's private address and port in
the HAProxy backend of its group (`lab.lb.backend_name`). HAProxy is changed through its admin
socket at runtime, never restarted, so connections in flight are never cut: a deregistered
target's server goes to maintenance (no new requests; those in flight finish), a registered one
is put in service (its health check then brings it UP), taking the server of its node's name
when there is one (a replacement) or a spare slot (lab/lb.py configures SPARE_SLOTS per group).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

POLL_S = 1.0
# srv_admin_state bits of `show servers state` that mean maintenance: forced, inherited, resolver's.
MAINT = 0x01 | 0x02 | 0x20


@dataclass(frozen=True)
class Server:
    """A server of a backend as HAProxy holds it now."""

    name: str
    address: str
    port: int
    maint: bool


@dataclass(frozen=True)
class Target:
    """A registered target, resolved: the node its instance runs, its address and port."""

    node: str
    address: str
    port: int


def runtime(socket_path: Path, command: str) -> str:
    """One command on HAProxy's admin socket; its answer."""
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(5)
        client.connect(str(socket_path))
        client.sendall(command.encode() + b"\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer.decode()


def servers(socket_path: Path, backend: str) -> list[Server]:
    """The servers of `backend` (`show servers state`)."""
    lines = [line for line in runtime(socket_path, f"show servers state {backend}").splitlines() if line.strip()]
    header = next(line for line in lines if line.startswith("# ")).lstrip("# ").split()
    found = []
    for line in lines:
        if line.startswith("#") or len(line.split()) < len(header):
            continue
        row = dict(zip(header, line.split()))
        found.append(Server(row["srv_name"], row["srv_addr"], int(row["srv_port"]),
                            bool(int(row["srv_admin_state"]) & MAINT)))
    return found


def changes(backend: str, current: list[Server], wanted: list[Target]) -> list[str]:
    """The runtime commands that make `backend`'s servers in service exactly the `wanted` targets:
    servers of unregistered targets to maintenance, each registered target not yet held by a
    server put on one (its node's, else a spare) and made ready."""
    commands = []
    wanted_at = {(t.address, t.port): t for t in wanted}
    held = {(s.address, s.port) for s in current if not s.maint and (s.address, s.port) in wanted_at}
    free = []
    for server in current:
        if (server.address, server.port) in held and not server.maint:
            continue
        if (server.address, server.port) in wanted_at and server.maint and (server.address, server.port) not in held:
            commands.append(f"set server {backend}/{server.name} state ready")  # registered again
            held.add((server.address, server.port))
            continue
        if not server.maint:
            commands.append(f"set server {backend}/{server.name} state maint")  # deregistered
        free.append(server)
    for target in (t for key, t in wanted_at.items() if key not in held):
        server = next((s for s in free if s.name == target.node), None) or next(iter(free), None)
        if server is None:
            break  # more targets than slots: the rest wait (lab/lb.py's SPARE_SLOTS)
        free.remove(server)
        commands += [f"set server {backend}/{server.name} addr {target.address} port {target.port}",
                     f"set server {backend}/{server.name} state ready"]
    return commands


@dataclass
class Follower:
    """Keeps HAProxy's backends in step with `registered()` (backend → targets), on a thread."""

    registered: Callable[[], dict[str, list[Target]]]
    socket_path: Path
    log: Callable[[str], None] = print

    def follow(self) -> list[str]:
        """One pass; returns the commands sent. Nothing while HAProxy is not up yet."""
        if not self.socket_path.exists():
            return []
        sent = []
        for backend, targets in self.registered().items():
            for command in changes(backend, servers(self.socket_path, backend), targets):
                answer = runtime(self.socket_path, command).strip()
                self.log(f"lab lb: {command}" + (f": {answer}" if answer else ""))
                sent.append(command)
        return sent

    def run(self) -> None:
        while True:
            try:
                self.follow()
            except (OSError, StopIteration) as error:  # HAProxy starting or gone: the next pass retries
                self.log(f"lab lb: {type(error).__name__}: {error}")
            threading.Event().wait(POLL_S)

    def start(self) -> None:
        threading.Thread(target=self.run, daemon=True, name="lab-lb-targets").start()
