"""`up` and `down` of a lab stack: its offline plan realised as booted hosts on the lab bridge.

`up` builds (or reuses) the image, puts the plan's whole VPC range on the lab bridge (the VPC
router's address, the range's first, is the bridge's), then boots every instance in waves (CPU is
the limit on this machine) and waits until each host's sshd answers. `down` removes everything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from infra.config import StackConfig
from lab import hosts, image
from lab.plan import LabPlan, lab_plan

METADATA_ADDRESS = "169.254.169.254"
WAVE = 4  # hosts booted at once; systemd's boot is CPU-bound on 2 cores
SSH_TIMEOUT_S = 120.0


@dataclass
class UpReport:
    """What `up` did and how long each part took (seconds)."""

    image_s: float = 0.0
    boot_s: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0
    failed: list[str] = field(default_factory=list)


def specs(plan: LabPlan) -> list[hosts.HostSpec]:
    """One host per planned instance, its planned addresses, its place on the bridge."""
    return [hosts.HostSpec(i.node, i.private_ip, index, (i.public_ip,) if i.public_ip else ())
            for index, i in enumerate(plan.instances)]


def up(config: StackConfig, stack: str) -> UpReport:
    """Realise the plan of `stack`: every instance booted and answering SSH, or a LabError."""
    started = time.monotonic()
    report = UpReport()
    plan = lab_plan(config, stack)
    tree = image.build()
    report.image_s = time.monotonic() - started
    public = tuple(i.public_ip for i in plan.instances if i.public_ip)
    gateway = hosts.bridge_up(plan.network, public)
    all_specs = specs(plan)
    for wave_start in range(0, len(all_specs), WAVE):
        wave = all_specs[wave_start:wave_start + WAVE]
        boot_started = {}
        for spec in wave:
            boot_started[spec.name] = time.monotonic()
            hosts.start(spec, tree, gateway, plan.network.prefixlen, METADATA_ADDRESS)
        for spec in wave:
            if hosts.wait_port(spec.address, 22, SSH_TIMEOUT_S):
                report.boot_s[spec.name] = time.monotonic() - boot_started[spec.name]
            else:
                report.failed.append(f"{spec.name}: sshd on {spec.address}:22 not up after {SSH_TIMEOUT_S:.0f} s")
    report.total_s = time.monotonic() - started
    return report


def down() -> None:
    """Remove the lab (every host, the bridge and the lab's rules); the cached image stays."""
    hosts.down()
