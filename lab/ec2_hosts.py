"""Lab hosts follow the lab AWS's EC2 instance states, as EC2's own hosts follow the API.

Runs in the lab's AWS process (lab/aws.py), beside moto, whose instances it reads in process:
- an instance stopped (StopInstances) → its host shuts down cleanly (Force=True: powered off at
  once); started again (StartInstances) → the same host boots again from the same root disk;
- an instance terminated → its host is powered off and removed with its root disk (a terminated
  instance's root volume is deleted with it), so its name is free for a replacement;
- a new instance (RunInstances) → a new host, from a fresh copy-on-write root of the image, at the
  private address moto gave it, booting its user_data from the metadata service like the others.

The lab acts on the API's transitions only: a host that dies while EC2 still says "running" (a
drill's hard kill: hardware failure) stays dead until an operator acts through the API.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lab import hosts
from lab.security_groups import SecurityGroups

LIVE = ("pending", "running")
DOWN = ("stopping", "stopped", "shutting-down")
POLL_S = 1.0


@dataclass(frozen=True)
class Seen:
    """An instance as the lab's EC2 holds it now."""

    instance_id: str
    node: str  # its photostack:node tag (else its id)
    state: str
    address: str
    volume: tuple[str, int] | None = None  # its attached EBS volume besides the root: (id, GiB)


@dataclass(frozen=True)
class Action:
    """What the lab does to a host: "launch", "start", "stop", "kill" (power off at once) or "remove"."""

    kind: str
    instance_id: str
    host: str
    address: str = ""


# Removals and power-offs first: a replacement may take the name and address of what it replaces.
ORDER = {"remove": 0, "kill": 1, "stop": 2, "start": 3, "launch": 4}


def decide(previous: dict[str, str], current: list[Seen], host_of: dict[str, str],
           forced: set[str]) -> list[Action]:
    """The host actions that make hosts follow the instances' state changes since `previous`
    (instance id → state), given which host each known instance has (`host_of`) and which
    instances were stopped with Force."""
    actions = []
    removed = set()
    for seen in current:
        before, host = previous.get(seen.instance_id), host_of.get(seen.instance_id)
        if seen.state == "terminated":
            if host is not None and before != "terminated":
                actions.append(Action("remove", seen.instance_id, host))
                removed.add(host)
        elif seen.state in DOWN:
            if host is not None and before in LIVE:
                actions.append(Action("kill" if seen.instance_id in forced else "stop", seen.instance_id, host))
        elif seen.state in LIVE:
            if host is None and before is None:
                actions.append(Action("launch", seen.instance_id, "", seen.address))
            elif host is not None and before in DOWN:
                actions.append(Action("start", seen.instance_id, host))
    taken = {h for i, h in host_of.items() if h not in removed}
    named = []
    for action in actions:
        if action.kind == "launch":
            node = next(s.node for s in current if s.instance_id == action.instance_id)
            # A replacement takes its node's name once the replaced host is removed; a second live
            # instance of a node (a stray) gets its instance id as its name.
            name = node if node not in taken else action.instance_id
            taken.add(name)
            action = Action("launch", action.instance_id, name, action.address)
        named.append(action)
    return sorted(named, key=lambda a: ORDER[a.kind])


def free_veth_index(limit: int = 250) -> int:
    """The lowest host veth index (pslvN) not on this machine (the load balancers use 250 and up)."""
    used = {p.name for p in Path("/sys/class/net").iterdir()}
    for index in range(limit):
        if hosts.HostSpec("", "", index).veth not in used:
            return index
    raise hosts.LabError(f"no free veth index below {limit}")


@dataclass
class HostLauncher:
    """What booting a lab host takes (lab/fleet.py's `hosts.start` arguments)."""

    image: Path
    gateway: str
    prefixlen: int
    metadata_address: str
    environment: dict[str, str]
    names: dict[str, str]
    certificates: list[Path]
    security_groups: SecurityGroups | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> HostLauncher:
        groups = SecurityGroups.from_json(config["security_groups"]) if config.get("security_groups") else None
        return cls(Path(config["image"]), config["gateway"], config["prefixlen"], config["metadata_address"],
                   config["environment"], config["names"], [Path(c) for c in config["certificates"]], groups)

    def protect(self, specs: list[hosts.HostSpec]) -> None:
        """Every host's security groups, with the hosts there are now (lab/security_groups.py)."""
        if self.security_groups is not None:
            self.security_groups.protect(specs)

    def boot(self, spec: hosts.HostSpec, volume: tuple[str, int] | None = None) -> None:
        """Boot `spec`, with its instance's attached EBS `volume` (id, GiB) if it has one."""
        pid = hosts.start(spec, self.image, self.gateway, self.prefixlen, self.metadata_address,
                          environment=self.environment, names=self.names, certificates=self.certificates,
                          **hosts.nitro_volume(volume))
        # This process is the nspawn's parent: reap it when the host powers off (no zombie in its cgroup).
        threading.Thread(target=os.waitpid, args=(pid, 0), daemon=True).start()


@dataclass
class Reconciler:
    """Makes lab hosts follow `instances()` (moto's instances, as Seen), on a thread of its own."""

    instances: Callable[[], list[Seen]]
    launcher: HostLauncher
    specs: dict[str, hosts.HostSpec]  # instance id → its host; the seeded ones were booted by lab/fleet.py
    previous: dict[str, str] = field(default_factory=dict)
    forced: set[str] = field(default_factory=set)
    log: Callable[[str], None] = print
    _wake: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.previous = self.previous or {s.instance_id: s.state for s in self.instances()}

    def force(self, instance_ids: list[str]) -> None:
        """StopInstances with Force=True for these (their hosts are powered off at once)."""
        with self._lock:
            self.forced.update(instance_ids)

    def wake(self) -> None:
        """An instance state may have changed: reconcile now rather than at the next poll."""
        self._wake.set()

    def reconcile(self) -> list[Action]:
        """One pass: act on every state change since the last pass; returns what was done."""
        current = self.instances()
        volumes = {s.instance_id: s.volume for s in current}
        with self._lock:
            actions = decide(self.previous, current, {i: s.name for i, s in self.specs.items()}, self.forced)
            self.forced -= {s.instance_id for s in current if s.state not in LIVE}
        stops = [a.host for a in actions if a.kind == "stop"]
        if stops:
            hosts.stop(*stops)  # clean shutdowns all at once, each killed after hosts.STOP_TIMEOUT_S
        for action in actions:
            self.log(f"lab ec2: {action.kind} {action.host} ({action.instance_id})")
            if action.kind == "remove":
                hosts.remove(action.host)
                del self.specs[action.instance_id]
            elif action.kind == "kill":
                hosts.kill(action.host)
            elif action.kind == "start":
                self.launcher.boot(self.specs[action.instance_id], volumes[action.instance_id])
            elif action.kind == "launch":
                hosts.remove(action.host)  # leftovers of a name nothing holds any more
                spec = hosts.HostSpec(action.host, action.address, free_veth_index())
                self.specs[action.instance_id] = spec
                self.launcher.boot(spec, volumes[action.instance_id])
        if any(a.kind in ("launch", "start") for a in actions):
            self.launcher.protect(list(self.specs.values()))
        self.previous = {s.instance_id: s.state for s in current}
        return actions

    def run(self) -> None:
        while True:
            self._wake.wait(POLL_S)
            self._wake.clear()
            try:
                self.reconcile()
            except Exception as error:  # noqa: BLE001 - the lab's AWS keeps serving; the next pass retries
                self.log(f"lab ec2: {type(error).__name__}: {error}")

    def start(self) -> None:
        threading.Thread(target=self.run, daemon=True, name="lab-ec2-hosts").start()
