"""SSH host keys of an AWS stack's instances, pinned from the EC2 API, never learned over the network.

cloud-init prints every instance's SSH host public keys to its console at first boot, between
`-----BEGIN SSH HOST KEY KEYS-----` and `-----END SSH HOST KEY KEYS-----`; EC2's GetConsoleOutput
(an authenticated AWS call, answered by AWS, not by the host) returns that text. `ops` pins each
instance's keys the first time it sees the instance (kept per instance id in the stack's state
dir) and connects with a known_hosts file holding only those keys: a host — or a bastion — that
answers with any other key is refused, whatever its address.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infra.config import ConfigError

BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
END = "-----END SSH HOST KEY KEYS-----"
PINS_FILE = "host_keys.json"
KNOWN_HOSTS_FILE = "known_hosts"


def console_host_keys(console: str) -> list[str]:
    """The `type base64` host keys cloud-init printed in `console` (the last block printed)."""
    _, found, rest = console.rpartition(BEGIN)
    if not found or END not in rest:
        return []
    return [" ".join(line.split()[:2]) for line in rest.split(END, 1)[0].splitlines() if len(line.split()) >= 2]


def _addresses(instance: dict[str, Any]) -> list[str]:
    return [a for a in (instance.get("PrivateIpAddress"), instance.get("PublicIpAddress")) if a]


def pin_host_keys(instances: list[dict[str, Any]], ec2_client: Any, state: Path) -> Path:
    """Write the known_hosts of `instances` (pinning the keys of instances seen for the first
    time from their console output) and return its path. An instance with no keys published yet
    stops the command with one line: it is never trusted blindly."""
    pins_path = state / PINS_FILE
    pins: dict[str, list[str]] = json.loads(pins_path.read_text()) if pins_path.exists() else {}
    problems = []
    for instance in instances:
        instance_id = instance["InstanceId"]
        if instance_id not in pins:
            console = ec2_client.get_console_output(InstanceId=instance_id, Latest=True).get("Output") or ""
            keys = console_host_keys(console)
            if not keys:
                problems.append(f"instance {instance_id}: no SSH host key in its console output yet "
                                "(cloud-init prints it at first boot); retry in a minute")
                continue
            pins[instance_id] = keys
    if problems:
        raise ConfigError(problems)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    live = {i["InstanceId"] for i in instances}
    pins = {k: v for k, v in pins.items() if k in live}  # terminated instances' keys go
    pins_path.write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n")
    known_hosts = state / KNOWN_HOSTS_FILE
    known_hosts.write_text("".join(f"{address} {key}\n" for instance in instances
                                   for address in _addresses(instance) for key in pins[instance["InstanceId"]]))
    return known_hosts
