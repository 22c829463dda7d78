"""`ops status`: what every runbook needs to see, read in one round trip per host.

Per host: each service up or down; each Munin value a paging alert watches (the value, its
limits, and the runbook that answers it); each app node's `/health`; and from the state: which
member of each shard is primary, the deploy lock, the open alerts.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from infra.config import ConfigError
from infra.inventory import Host
from infra.shardstore import stored_primaries
from infra.alerts import RUNBOOKS, runbook_name
from ops.lock import stack_lock
from ops.remote import StepFailed, run_step
from ops.stack import Stack
from roles.engine.changes import sections
from roles.engine.resources import Service
from roles.postgres import commands as pg
from roles.postgres.cluster import cluster_of

PAGING_RUNBOOKS = set(RUNBOOKS.values())
DEPLOY_LOCK = "deploy.lock"


@dataclass(frozen=True)
class Reading:
    """One Munin value a paging alert watches."""

    host: str
    plugin: str
    field: str
    value: str
    warning: str
    critical: str
    runbook: str

    @property
    def state(self) -> str:
        try:
            value = float(self.value)
        except ValueError:
            return "unknown"
        for name, limit in (("critical", self.critical), ("warning", self.warning)):
            if limit and _outside(value, limit):
                return name
        return "ok"


def _outside(value: float, limit: str) -> bool:
    """Munin limits: `max`, `min:max`, `min:`."""
    low, _, high = limit.partition(":") if ":" in limit else ("", "", limit)
    return (bool(low) and value < float(low)) or (bool(high) and value > float(high))


@dataclass
class Overview:
    services: list[tuple[str, str, str, str]] = field(default_factory=list)  # host, role, service, up/down
    readings: list[Reading] = field(default_factory=list)
    shards: list[tuple[int, str, str, str]] = field(default_factory=list)  # shard, cluster, stored role, live state
    health: list[tuple[str, str]] = field(default_factory=list)  # node, answer
    lock: str = ""
    open_alerts: list[str] = field(default_factory=list)
    alerts_unread: str = ""  # why the open alerts could not be read (then open_alerts is empty)

    @property
    def healthy(self) -> bool:
        return (all(s[3] == "up" for s in self.services) and all(r.state in ("ok", "unknown") for r in self.readings)
                and all(h[1].startswith("200") for h in self.health))


MARK = "@@photostack-status@@"


def host_script(stack: Stack, host: Host) -> str:
    """One script printing every fact `status` shows for `host`, between markers."""
    ctx = stack.context(host)
    parts = ["exec 2>/dev/null"]
    for role in host.roles:
        for s in stack.services(host, {role}).resources:
            assert isinstance(s, Service)
            parts.append(f"echo '{MARK}service {role} {s.name}'; ( {s.status} ) >/dev/null 2>&1 && echo up || echo down")
    parts.append(
        f"for p in /etc/munin/plugins/*; do n=$(basename $p); echo \"{MARK}munin $n\"; "
        "timeout 10 munin-run $n config | grep -E '\\.(warning|critical) '; timeout 10 munin-run $n; done"
    )
    for node in host.nodes_of("postgres"):
        cluster = cluster_of(ctx, node)
        recovery = pg.psql_is_true(cluster, "SELECT pg_is_in_recovery()")
        writable = pg.psql_is_true(cluster, "SELECT NOT pg_is_in_recovery()")
        parts.append(f"echo '{MARK}shard {cluster.shard} {cluster.name} {'primary' if cluster.is_primary else 'replica'}'; "
                     f"if {writable}; then echo primary; elif {recovery}; then echo replica; else echo down; fi")
    for node in host.nodes_of("app"):
        address, port = ctx.address(node), ctx.port(node)
        parts.append(
            f"echo '{MARK}health {node.name}'; ( exec 3<>/dev/tcp/{address}/{port} && "
            f"printf 'GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && timeout 3 head -1 <&3 | cut -d' ' -f2- ) "
            "|| echo 'no answer'"
        )
    return "\n".join(parts) + "\n"


def parse_host(host: str, output: str, overview: Overview) -> None:
    """Fold one host's script output into the overview."""
    for head, lines in sections(output, MARK):
        kind, _, rest = head.partition(" ")
        answer = lines[0].strip() if lines else ""
        if kind == "service":
            role, _, name = rest.partition(" ")
            overview.services.append((host, role, name, answer or "down"))
        elif kind == "shard":
            shard, name, stored = rest.split()
            overview.shards.append((int(shard), name, stored, answer or "down"))
        elif kind == "health":
            overview.health.append((rest, answer.strip() or "no answer"))
        elif kind == "munin":
            overview.readings += _readings(host, rest, [line.strip() for line in lines])


def _readings(host: str, plugin: str, lines: list[str]) -> list[Reading]:
    limits: dict[tuple[str, str], str] = {}
    values: dict[str, str] = {}
    for line in lines:
        if m := re.match(r"^(\w+)\.(warning|critical) (\S+)$", line):
            limits[(m[1], m[2])] = m[3]
        elif m := re.match(r"^(\w+)\.value (\S+)$", line):
            values[m[1]] = m[2]
    result = []
    for name, value in values.items():
        runbook = runbook_name(plugin, name)
        # Only values with limits can page; the rest of a plugin's fields are context.
        if runbook in PAGING_RUNBOOKS and ((name, "warning") in limits or (name, "critical") in limits):
            result.append(Reading(host, plugin, name, value, limits.get((name, "warning"), ""),
                                  limits.get((name, "critical"), ""), runbook))
    return result


def overview(stack: Stack) -> Overview:
    """Read everything `ops status` shows."""
    result = Overview()

    def read(host: Host) -> str | StepFailed:
        try:
            return run_step(host, stack.ssh, "status", host_script(stack, host))
        except StepFailed as exc:
            return exc

    def alerts() -> dict | str:
        try:
            return stack.alert_state(history=0).open_alerts()
        except (StepFailed, ConfigError) as exc:
            return str(exc)

    # Every host at once (one round trip each), and the alert state, folded in inventory order.
    with ThreadPoolExecutor(max_workers=min(32, len(stack.hosts) + 1)) as pool:
        opened = pool.submit(alerts)
        outputs = list(pool.map(read, stack.hosts))
    for host, output in zip(stack.hosts, outputs):
        if isinstance(output, StepFailed):
            result.services.append((host.name, "-", "ssh", f"down: {output}"))
        else:
            parse_host(host.name, output, result)
    primaries = stored_primaries(stack.config, stack.name)
    result.shards.sort()
    result.shards = [(s, n, stored + (" (rebuilding)" if _rebuilding(primaries, s, n) else ""), live)
                     for s, n, stored, live in result.shards]
    lock = stack_lock(stack, DEPLOY_LOCK).read()  # on AWS the shared one every operator sees
    result.lock = lock.describe() if lock else ""
    alert_state = opened.result()  # the monitoring host's on AWS, every operator sees the same
    if isinstance(alert_state, str):
        result.alerts_unread = alert_state
    else:
        result.open_alerts = sorted(alert_state)
    return result


def _rebuilding(primaries, shard: int, name: str) -> bool:
    member = int(name.split("r")[-1]) if "r" in name.removeprefix("shard") else 0
    return member in primaries.of(shard).rebuilding
