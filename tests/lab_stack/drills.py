"""Fleet drills on the lab (issue 20): a fault injected into the hosts' network under users' load
through the load balancer, then what the users saw. Each drill returns its figures; the tests in
test_fleet_drills.py assert on them and bench/fleet_drills.py prints them.

Faults are iptables rules inside a host's own network namespace (the kernel here has no netem:
loss is the `statistic` match), each tagged with DRILL_COMMENT and removed by `heal`, also when the
drill fails half-way.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.shards import username_shard
from infra.aws_inventory import node_instance
from infra.config import load_stack_config
from infra.role_settings import declared
from infra.sharding import ShardMap, decode_id
from infra.topology import STANDARD_PORTS
from lab import hosts
from lab.planned_instances import LabPlan
from roles.app.runtime import ENV_FILE as APP_ENV
from roles.nginx.role import SITE as NGINX_SITE
from tests.e2e.conftest import Client
from tests.lab_stack.conftest import STACK, instance_of, operator_client, operator_environment, ops
from tests.lab_stack.fleetload import FleetLoad, LoadReport, Sample, Users, lost

DRILL_COMMENT = f"{hosts.PREFIX}-drill"
# What a request may take beyond nginx's budget for its route: the load balancer, TLS and the
# client on this loaded 2-core machine.
CLIENT_SLACK_S = 2.0
# After a fault is healed the load runs this long; requests from 5 s after healing on must all succeed.
HEALED_WATCH_S = 20.0
# The health watcher resolves after two good probes 10 s apart (roles/munin_master/defaults.yaml).
RESOLVE_TIMEOUT_S = 90.0


def _seconds(value: str) -> float:
    """An nginx time ("500ms", "1s", "10s") in seconds."""
    return float(value[:-2]) / 1000 if value.endswith("ms") else float(value.rstrip("s"))


def route_budgets() -> dict[str, float]:
    """The longest nginx lets each kind of request take (its route's read timeout, per try, plus
    the connect timeout, times the tries; posts are never retried), plus CLIENT_SLACK_S."""
    d = declared("nginx")
    connect, quick, post = (_seconds(d[k]) for k in ("nginx_proxy_connect_timeout", "nginx_read_timeout_quick",
                                                      "nginx_read_timeout_post"))
    tries = 2  # proxy_next_upstream_tries in roles/nginx/templates/site.conf.j2
    return {"like": tries * (connect + quick) + CLIENT_SLACK_S, "feed": tries * (connect + quick) + CLIENT_SLACK_S,
            "post": tries * connect + post + CLIENT_SLACK_S}


def over_budget(samples: list[Sample]) -> list[Sample]:
    budgets = route_budgets()
    return [s for s in samples if s.seconds > budgets[s.kind]]


def _iptables(node: str, *rule: str) -> str:
    return hosts.run("ip", "netns", "exec", f"{hosts.PREFIX}-{node}", "iptables", "-w", *rule).stdout


def lossy(node: str, peer: str, probability: float) -> None:
    """Drop `probability` of the packets between `node` and address `peer`, both ways."""
    match = ["-m", "statistic", "--mode", "random", "--probability", f"{probability:.3f}", "-j", "DROP",
             "-m", "comment", "--comment", DRILL_COMMENT]
    _iptables(node, "-I", "OUTPUT", "-d", peer, *match)
    _iptables(node, "-I", "INPUT", "-s", peer, *match)


def dropped(node: str) -> int:
    """Packets the drill's rules on `node` dropped so far."""
    total = 0
    for chain in ("INPUT", "OUTPUT"):
        for line in _iptables(node, "-L", chain, "-v", "-x", "-n").splitlines():
            if DRILL_COMMENT in line:
                total += int(line.split()[0])
    return total


def heal(nodes: list[str]) -> None:
    """Remove every drill rule from `nodes` (whatever a drill left)."""
    for node in nodes:
        for chain in ("INPUT", "OUTPUT"):
            rules = _iptables(node, "-S", chain).splitlines()
            for rule in rules:
                if DRILL_COMMENT in rule:
                    _iptables(node, "-D", *rule.split()[1:])


@dataclass
class FaultResult:
    """What users saw around a fault: every request, those while it lasted, those from 5 s after
    it healed (requests in flight at healing belong to the fault), those over their route's
    budget, and acknowledged writes not found afterwards."""

    report: LoadReport
    during: list[Sample]
    after: list[Sample]
    over_budget: list[Sample]
    lost: list[str]


def _fault_under_load(users: Users, make_client: Callable[[], Client], fault_s: float, inject: Callable[[], None],
                      heal_fault: Callable[[], None], while_faulty: Callable[[], None] = lambda: None,
                      when_healed: Callable[[], None] = lambda: None, inject_s: float = 0.0,
                      over: Callable[[], bool] = lambda: False) -> FaultResult:
    """Users' load running, `inject` a fault and keep it `fault_s` or until `over()` (`while_faulty`
    between requests), `heal_fault` (also when the drill fails half-way), watch the healed load
    HEALED_WATCH_S, then `when_healed` before the load stops; what the users saw. `inject_s`: how
    long `inject` itself may take (an operator's command), which the load must outlast."""
    load = FleetLoad(users, max_seconds=inject_s + fault_s + HEALED_WATCH_S + RESOLVE_TIMEOUT_S + 120).start()
    try:
        load.wait_for(30)
        started = time.monotonic()
        inject()
        while time.monotonic() - started < fault_s and not over():  # the fault's length: load runs meanwhile
            load.wait_for(1, timeout=fault_s + 30)
            while_faulty()
    finally:
        heal_fault()
    healed = time.monotonic()
    while time.monotonic() - healed < HEALED_WATCH_S:
        load.wait_for(1, timeout=60)
    when_healed()
    report = load.stop()
    return FaultResult(report, report.between(started, healed), report.between(healed + 5, float("inf")),
                       over_budget(report.samples), _settled_lost(make_client(), report))


@dataclass
class LossyLinkResult(FaultResult):
    probability: float
    fault_s: float
    dropped_packets: int

    def figures(self) -> dict[str, str]:
        failed = LoadReport.failed(self.during)
        return {"requests": str(len(self.report.samples)), "during the fault": self.report.describe(self.during),
                "failed % during the fault": f"{len(failed) / max(1, len(self.during)):.2%}",
                "over their route's budget": str(len(self.over_budget)), "packets dropped": str(self.dropped_packets),
                "after healing": self.report.describe(self.after), "acknowledged writes lost": str(len(self.lost))}


def lossy_link(plan: LabPlan, users: Users, make_client: Callable[[], Client], probability: float = 0.2,
               fault_s: float = 30.0) -> LossyLinkResult:
    """Drill 6: `probability` packet loss between every app and worker host and every shard's
    primary for `fault_s` under load; then healed, and the load watched until it is clean again."""
    clients = [i.node for i in plan.instances if i.role in ("app", "worker")]
    primaries = {current_primary(plan, shard) for shard in range(Placement.stored().shard_map.physical_shards)}
    addresses = [i.private_ip for i in plan.instances if i.node in primaries]
    packets = []

    def make_lossy() -> None:
        for node in clients:
            for primary in addresses:
                lossy(node, primary, probability)

    def heal_and_count() -> None:
        packets.append(sum(dropped(node) for node in clients))
        heal(clients)

    seen = _fault_under_load(users, make_client, fault_s, make_lossy, heal_and_count)
    return LossyLinkResult(**vars(seen), probability=probability, fault_s=fault_s, dropped_packets=packets[0])


def partition(node: str) -> None:
    """Cut `node` off the network (everything but its loopback), the host itself running on."""
    for chain, interface in (("INPUT", "-i"), ("OUTPUT", "-o")):
        _iptables(node, "-I", chain, "!", interface, "lo", "-j", "DROP", "-m", "comment", "--comment", DRILL_COMMENT)


def alert_history() -> dict:
    """`ops --stack lab alerts --json` as the operator runs it: the monitoring host's alert store."""
    state = Path(tempfile.mkdtemp(prefix="photostack-drill-"))
    try:
        done = ops("alerts", "--json", "--limit", "200", env=operator_environment(state), timeout=120)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    if done.returncode != 0:
        raise AssertionError(f"ops alerts: exit {done.returncode}: {done.stderr.strip()}")
    return json.loads(done.stdout)


def _page_of(node: str, alerts: dict, action: str, since: float) -> dict | None:
    """The first logged `action` (trigger, resolve) of `node`'s health alert at or after `since` (epoch)."""
    return next((r for r in alerts["history"] if r["action"] == action and r["at"] >= since
                 and node in (r.get("dedup_key") or "")), None)


@dataclass
class PartitionResult(FaultResult):
    node: str
    fault_s: float
    page: dict | None  # the health alert's trigger, as the monitoring host logged it
    paged_after_s: float | None
    resolve: dict | None
    resolved_after_s: float | None  # after healing

    @property
    def failed_ratio(self) -> float:
        return len(LoadReport.failed(self.report.samples)) / max(1, len(self.report.samples))

    def figures(self) -> dict[str, str]:
        return {"requests": str(len(self.report.samples)), "failed %": f"{self.failed_ratio:.3%}",
                "during the partition": self.report.describe(self.during),
                "after healing": self.report.describe(self.after),
                "over their route's budget": str(len(self.over_budget)), "acknowledged writes lost": str(len(self.lost)),
                "paged after": f"{self.paged_after_s:.0f} s" if self.paged_after_s is not None else "no page",
                "page resolved after healing": (f"{self.resolved_after_s:.0f} s" if self.resolved_after_s is not None
                                                else "not resolved")}


def app_host_partitioned(plan: LabPlan, users: Users, make_client: Callable[[], Client],
                         fault_s: float = 40.0) -> PartitionResult:
    """Drill 2: one app host cut off for `fault_s` under load (the process on it lives on); nginx's
    connect timeouts and passive checks take it out, idempotent requests are retried on the other.
    The monitoring host's health watcher pages (read with `ops alerts`) and resolves once healed."""
    apps = [i.node for i in plan.instances if i.role == "app"]
    if len(apps) < 2:
        raise AssertionError(f"an app host partition needs two app hosts; the lab plan has {apps}")
    node = apps[-1]
    # Epoch times, as the alert log's: when the fault started and healed, when its page came and went.
    times: dict[str, float] = {}
    found: dict[str, dict] = {}

    def cut() -> None:
        times["cut"] = time.time()
        partition(node)

    def look_for_page() -> None:
        if "trigger" not in found and (page := _page_of(node, alert_history(), "trigger", times["cut"])):
            found["trigger"], times["paged"] = page, time.time()

    def unheal() -> None:
        heal([node])
        times["healed"] = time.time()

    def wait_for_resolve() -> None:
        while "trigger" in found and "resolve" not in found and time.time() - times["healed"] < RESOLVE_TIMEOUT_S:
            if resolve := _page_of(node, alert_history(), "resolve", times["healed"]):
                found["resolve"] = resolve
            else:
                time.sleep(2)

    seen = _fault_under_load(users, make_client, fault_s, cut, unheal, look_for_page, wait_for_resolve)
    resolve = found.get("resolve")
    return PartitionResult(**vars(seen), node=node, fault_s=fault_s, page=found.get("trigger"),
                           paged_after_s=times["paged"] - times["cut"] if "paged" in times else None,
                           resolve=resolve, resolved_after_s=resolve["at"] - times["healed"] if resolve else None)


# Drill 4's bound on a replacement coming back (its first boot on this loaded 2-core machine included).
REPLACE_TIMEOUT_S = 900.0


@dataclass
class ReplaceResult(FaultResult):
    node: str
    old_address: str
    new_address: str
    ops_exit: int | None
    ops_output: str
    ops_s: float | None  # `ops replace-node` from start to exit
    back_in_service_s: float | None  # from the command to the new host answering nginx's upstream

    def figures(self) -> dict[str, str]:
        failed = LoadReport.failed(self.during)
        return {"requests": str(len(self.report.samples)), "until back in service": self.report.describe(self.during),
                "failed % until back in service": f"{len(failed) / max(1, len(self.during)):.2%}",
                "ops replace-node took": f"{self.ops_s:.0f} s" if self.ops_s is not None else "did not finish",
                "back in service after": (f"{self.back_in_service_s:.0f} s" if self.back_in_service_s is not None
                                          else "not back"),
                "address": f"{self.old_address} → {self.new_address or '?'}",
                "after": self.report.describe(self.after), "acknowledged writes lost": str(len(self.lost))}


def _nginx_upstreams(nginx: str) -> list[str]:
    """The app servers (address:port) in service in nginx's upstream on host `nginx`, as its
    converge last wrote them."""
    site = hosts.host_dir(nginx) / "root" / NGINX_SITE.lstrip("/")
    text = site.read_text() if site.exists() else ""
    return [line.split()[1] for line in text.splitlines()
            if line.strip().startswith("server ") and ":" in line.split()[1] and " down" not in line]


def _answers_from(host: str, url: str, domain: str) -> bool:
    """Whether `url` answers 200 when asked from inside `host`'s network namespace."""
    found = hosts.run("ip", "netns", "exec", f"{hosts.PREFIX}-{host}", "curl", "-s", "-o", "/dev/null", "-m", "3",
                      "-w", "%{http_code}", "-H", f"Host: {domain}", url, check=False)
    return found.stdout.strip() == "200"


def replace_dead_host(plan: LabPlan, users: Users, make_client: Callable[[], Client], node: str,
                      in_service: Callable[[str], bool]) -> ReplaceResult:
    """Drill 4: host `node` dies (powered off at once; EC2 still says running, as with a hardware
    failure), and the operator runs `ops --stack lab replace-node NODE --yes` under load: the old
    instance is terminated, a new one launched from the launch template boots from its user_data
    at a new address, and its peers converge to it. Back in service: `in_service(new address)`."""
    (old_address,) = [i.private_ip for i in plan.instances if i.node == node]
    state = Path(tempfile.mkdtemp(prefix="photostack-drill-"))
    found: dict[str, object] = {}

    def run_replace() -> None:
        done = ops("replace-node", node, "--yes", env=operator_environment(state), timeout=REPLACE_TIMEOUT_S)
        found["ops_s"], found["done"] = time.monotonic() - found["started"], done

    command = threading.Thread(target=run_replace, daemon=True)

    def kill_and_replace() -> None:
        hosts.kill(node)
        found["started"] = time.monotonic()
        command.start()

    def back_in_service() -> bool:
        if "new_address" not in found:
            try:
                address = _private_address(instance_of(node))
            except ValueError:  # none running between the termination and the launch
                return False
            if address == old_address:
                return False  # still the dead one: the command has not terminated it yet
            found["new_address"] = address
        if in_service(str(found["new_address"])):
            found["back"] = time.monotonic() - found["started"]
            return True
        return False

    try:
        seen = _fault_under_load(users, make_client, REPLACE_TIMEOUT_S, kill_and_replace, lambda: None,
                                 over=back_in_service)
        command.join(REPLACE_TIMEOUT_S)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    done = found.get("done")
    return ReplaceResult(**vars(seen), node=node, old_address=old_address, new_address=str(found.get("new_address", "")),
                         ops_exit=done.returncode if done else None,
                         ops_output=(done.stdout + done.stderr)[-3000:] if done else "",
                         ops_s=found.get("ops_s"), back_in_service_s=found.get("back"))


def replace_dead_app_host(plan: LabPlan, users: Users, make_client: Callable[[], Client]) -> ReplaceResult:
    """Drill 4 for an app host. Back in service: nginx's upstream holds the new address and the
    app answers there from the nginx host."""
    domain = load_stack_config(STACK).domain
    (nginx,) = [i.node for i in plan.instances if i.role == "nginx"]

    def in_service(address: str) -> bool:
        upstream = next((u for u in _nginx_upstreams(nginx) if u.split(":")[0] == address), None)
        return upstream is not None and _answers_from(nginx, f"http://{upstream}/health", domain)

    return replace_dead_host(plan, users, make_client, [i for i in plan.instances if i.role == "app"][-1].node, in_service)


def _app_env(host: str) -> str:
    path = hosts.host_dir(host) / "root" / APP_ENV.lstrip("/")
    return path.read_text() if path.exists() else ""


def _memcached_answers(host: str, address: str, port: int) -> bool:
    """Whether Memcached at address:port answers `version` from inside `host`'s network namespace."""
    probe = f"exec 3<>/dev/tcp/{address}/{port} && printf 'version\\r\\n' >&3 && head -c 7 <&3"
    found = hosts.run("ip", "netns", "exec", f"{hosts.PREFIX}-{host}", "timeout", "3", "bash", "-c", probe, check=False)
    return found.stdout.startswith("VERSION")


def replace_dead_memcached_host(plan: LabPlan, users: Users, make_client: Callable[[], Client]) -> ReplaceResult:
    """Drill 4 for the Memcached host: while it is gone the app treats the cache as all misses.
    Back in service: every app and worker host's app.env names the new address (its processes
    restarted on it, in turn) and Memcached answers there from an app host."""
    (node,) = [i.node for i in plan.instances if i.role == "memcached"]
    clients = [i.node for i in plan.instances if i.role in ("app", "worker")]
    port = STANDARD_PORTS["memcached"]

    def in_service(address: str) -> bool:
        return (all(f"{address}:{port}" in _app_env(host) for host in clients)
                and _memcached_answers(clients[0], address, port))

    return replace_dead_host(plan, users, make_client, node, in_service)


def _private_address(instance: str) -> str:
    (reservation,) = operator_client("ec2").describe_instances(InstanceIds=[instance])["Reservations"]
    return reservation["Instances"][0]["PrivateIpAddress"]


def _settled_lost(checker: Client, report: LoadReport, patience_s: float = 30.0) -> list[str]:
    """`lost`, asked again for up to `patience_s` while like counts converge."""
    deadline, missing = time.monotonic() + patience_s, lost(checker, report)
    while missing and time.monotonic() < deadline:
        time.sleep(1)
        missing = lost(checker, report)
    return missing


# --- drill 1: a shard's primary partitioned, failed over by the operator ------------------------

FAILOVER_TIMEOUT_S = 600.0
# The old primary's machine, started again, boots and runs its clusters' start guard within this.
RESTART_TIMEOUT_S = 240.0
# What the operator takes to notice (the page) before running `ops failover`: the drill acts at
# once; the figure that counts is from the command on.
NOTICE_S = 5.0


def shard_members(shard: int = 0) -> list[str]:
    """The postgres nodes of physical shard `shard`, by member (0: the planned primary)."""
    from infra.config import load_stack_config
    from infra.topology import nodes

    members = [n for n in nodes(load_stack_config("lab")) if n.role == "postgres" and n.attrs["shard"] == shard]
    return [n.name for n in sorted(members, key=lambda n: n.attrs["replica"])]


@dataclass(frozen=True)
class Placement:
    """Which physical shard a user, and a photo with its likes, live on (app/shards.py's rule:
    the username's logical shard; the one a photo id encodes), by the lab's stored shard map."""

    shard_map: ShardMap
    epoch_ms: int

    @classmethod
    def stored(cls) -> Placement:
        from infra.targets.aws import SsmShardMapStore

        config = load_stack_config(STACK)
        stored = SsmShardMapStore(STACK, config.region, operator_client("ssm")).load()
        return cls(stored or ShardMap.initial(config), config.postgres.id_epoch_ms)

    def of_user(self, username: str) -> int:
        return self.shard_map.physical_of(username_shard(username, self.shard_map.logical_shards))

    def of_photo(self, photo_id: str) -> int:
        return self.shard_map.physical_of(decode_id(int(photo_id), self.epoch_ms).logical_shard)


def current_primary(plan: LabPlan, shard: int = 0) -> str:
    """The node of shard `shard`'s primary now, as the stack's primaries record says (a failover
    drill may have promoted the replica)."""
    from infra.shardstore import Primaries

    found = operator_client("ssm").get_parameters(Names=["/photostack/lab/primaries"])["Parameters"]
    primaries = Primaries.from_dict(json.loads(found[0]["Value"]) if found else None)
    return shard_members(shard)[primaries.of(shard).primary]


def _operator(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`ops --stack lab ARGS` as the operator runs it, with how long it took."""
    state = Path(tempfile.mkdtemp(prefix="photostack-drill-"))
    started = time.monotonic()
    try:
        done = ops(*args, env=operator_environment(state), timeout=FAILOVER_TIMEOUT_S)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return done, time.monotonic() - started


def _first_write_after(report: LoadReport, since: float, on: Callable[[Sample], bool]) -> float | None:
    """When the first write (post or like) `on` the shard in question that started at or after
    `since` was acknowledged."""
    return min((s.started + s.seconds for s in report.samples if s.kind in ("post", "like") and s.ok
                and s.started >= since and on(s)), default=None)


@dataclass
class PrimaryPartitionResult(FaultResult):
    old: str
    failover: subprocess.CompletedProcess[str]
    failover_s: float
    outage_from_fault_s: float | None  # the fault to the first acknowledged write to its shard after it
    outage_from_command_s: float | None  # `ops failover` started to the first acknowledged write to the shard after it
    fenced_at_restart: bool = False
    accepted_write_at_restart: str = ""
    rebuild: subprocess.CompletedProcess[str] | None = None
    rebuild_s: float = 0.0
    converge_check: subprocess.CompletedProcess[str] | None = None

    def figures(self) -> dict[str, str]:
        def seconds(value: float | None) -> str:
            return f"{value:.1f} s" if value is not None else "no write acknowledged"

        return {"requests": str(len(self.report.samples)), "during the fault": self.report.describe(self.during),
                "after": self.report.describe(self.after), "ops failover took": f"{self.failover_s:.1f} s",
                "shard's write outage from ops failover": seconds(self.outage_from_command_s),
                "shard's write outage from the partition": seconds(self.outage_from_fault_s),
                "old primary fenced when started again": str(self.fenced_at_restart),
                "ops failover's steps": "; ".join(f"{name} {seconds}" for seconds, name in re.findall(
                    r"^\s*([\d.]+s)\s+(.+)$", self.failover.stdout, re.M)),
                "ops rebuild-replica took": f"{self.rebuild_s:.1f} s",
                "acknowledged writes lost": str(len(self.lost))}


def in_host(node: str, script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` inside a running lab host (its mount, PID and network namespaces: what its own
    root sees, mounted volumes included), as the console would."""
    nspawn = int((hosts.host_dir(node) / "nspawn.pid").read_text())
    (init,) = Path(f"/proc/{nspawn}/task/{nspawn}/children").read_text().split()[:1]
    return subprocess.run(["nsenter", "-t", init, "-m", "-u", "-i", "-n", "-p", "--", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60)


def _cluster_answers(node: str) -> str:
    """'' when the node's cluster does not answer on its host (not running), else what it said."""
    done = in_host(node, "runuser -u postgres -- psql -XAtq -p 5432 -d postgres -c 'SELECT pg_is_in_recovery()'")
    return "" if done.returncode else f"the cluster answered (in recovery: {done.stdout.strip()})"


def primary_partitioned(plan: LabPlan, users: Users, make_client: Callable[[], Client], shard: int = 0) -> PrimaryPartitionResult:
    """Drill 1: shard `shard`'s primary cut off under load, the host running on and believing it is
    primary. The operator runs `ops failover` (which powers the old primary's machine off through
    EC2 and promotes the replica); the link heals; the old machine is started again and must stay
    fenced until `ops rebuild-replica`; afterwards `ops converge --check` finds nothing to change."""
    old = current_primary(plan, shard)
    placement = Placement.stored()
    times: dict[str, float] = {}
    outcome: dict[str, object] = {}

    def on_shard(sample: Sample) -> bool:  # writes to the other shards never waited on this one
        return bool(sample.photo) and placement.of_photo(sample.photo) == shard

    def cut() -> None:
        times["cut"] = time.monotonic()
        partition(old)
        time.sleep(NOTICE_S)
        times["command"] = time.monotonic()
        outcome["failover"], outcome["failover_s"] = _operator("failover", "--shard", str(shard), "--yes")

    seen = _fault_under_load(users, make_client, fault_s=0.0, inject=cut, heal_fault=lambda: heal([old]),
                             inject_s=NOTICE_S + FAILOVER_TIMEOUT_S)
    failover = outcome["failover"]
    result = PrimaryPartitionResult(
        **vars(seen), old=old, failover=failover, failover_s=outcome["failover_s"],
        outage_from_fault_s=_outage(seen.report, times["cut"], on_shard),
        outage_from_command_s=_outage(seen.report, times["command"], on_shard))
    if failover.returncode != 0:
        return result
    # The old machine started again (by anyone: EC2's recovery, an operator): its cluster must not
    # come back as a second primary.
    instance = node_instance("lab", old, operator_client("ec2"))["InstanceId"]  # stopped by the failover
    operator_client("ec2").start_instances(InstanceIds=[instance])
    member = shard_members(shard).index(old)
    cluster = f"shard{shard}" if member == 0 else f"shard{shard}r{member}"
    data_dir = f"/var/lib/postgresql/15/{cluster}"
    fenced = f"[ -d {data_dir}.fenced ] && ! [ -e {data_dir} ]"
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if in_host(old, fenced).returncode == 0:
                result.fenced_at_restart = True
                break
        except (OSError, ValueError):  # the host is still booting (no init yet)
            pass
        time.sleep(2)
    result.accepted_write_at_restart = _cluster_answers(old)
    result.rebuild, result.rebuild_s = _operator("rebuild-replica", "--shard", str(shard))
    result.converge_check, _ = _operator("converge", "--check", "--detailed-exitcode")
    return result


def _outage(report: LoadReport, since: float, on: Callable[[Sample], bool]) -> float | None:
    first = _first_write_after(report, since, on)
    return first - since if first is not None else None


# --- drill 3: a RabbitMQ node's host lost under post load -----------------------------------------

# A broker host started again boots, and its node rejoins the cluster, within this.
REJOIN_TIMEOUT_S = 300.0
# Thumbnails of the posts acknowledged before and during the fault are made within this afterwards.
THUMBNAIL_PATIENCE_S = 180.0


def broker_cluster(node: str) -> list[str]:
    """The running nodes of the RabbitMQ cluster as broker host `node` sees it ([] when it cannot say)."""
    try:
        done = in_host(node, "rabbitmqctl -q cluster_status --formatter json")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    return sorted(json.loads(done.stdout)["running_nodes"]) if done.returncode == 0 else []


def without_thumbnail(checker: Client, report: LoadReport, patience_s: float = THUMBNAIL_PATIENCE_S) -> list[str]:
    """Acknowledged posts whose thumbnail task never ran (asked again for up to `patience_s`)."""
    deadline = time.monotonic() + patience_s
    while True:
        missing = [p for p in report.posts if checker.json("GET", f"/api/photos/{p}")[1].get("thumbnail_url") is None]
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(3)


@dataclass
class BrokerLossResult(FaultResult):
    node: str
    fault_s: float
    cluster_during: list[str]
    cluster_after: list[str]
    rejoined_after_s: float | None
    tasks_lost: list[str]
    converge_check: subprocess.CompletedProcess[str] | None = None

    def figures(self) -> dict[str, str]:
        posts = [s for s in self.during if s.kind == "post"]
        return {"requests": str(len(self.report.samples)), "during the fault": self.report.describe(self.during),
                "posts during the fault": self.report.describe(posts), "after": self.report.describe(self.after),
                "cluster while the host was down": ", ".join(self.cluster_during) or "unknown",
                "rejoined after restart": f"{self.rejoined_after_s:.0f} s" if self.rejoined_after_s is not None else "no",
                "acknowledged writes lost": str(len(self.lost)),
                "acknowledged posts without their thumbnail (tasks lost)": str(len(self.tasks_lost))}


def rabbitmq_node_lost(plan: LabPlan, users: Users, make_client: Callable[[], Client],
                       fault_s: float = 30.0) -> BrokerLossResult:
    """Drill 3: one RabbitMQ node's host powered off at once (EC2 still says running) under users'
    load, posts each queueing a thumbnail task. After `fault_s` EC2 recovers the instance (stop and
    start: same address, same disk, as AWS's recovery of an impaired instance does) and its node
    rejoins the cluster. Every acknowledged post must get its thumbnail: no acknowledged task lost."""
    brokers = sorted(i.node for i in plan.instances if i.role == "rabbitmq")
    if len(brokers) < 3:
        raise AssertionError(f"a broker loss drill needs a 3-node cluster; the lab plan has {brokers}")
    node, witness = brokers[-1], brokers[0]
    seen_cluster: dict[str, object] = {}

    def power_lost() -> None:
        hosts.kill(node)

    def look() -> None:
        if "during" not in seen_cluster:
            seen_cluster["during"] = broker_cluster(witness)

    def recover() -> None:
        ec2 = operator_client("ec2")
        instance = node_instance("lab", node, ec2)["InstanceId"]
        ec2.stop_instances(InstanceIds=[instance], Force=True)
        ec2.get_waiter("instance_stopped").wait(InstanceIds=[instance], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        ec2.start_instances(InstanceIds=[instance])
        seen_cluster["restarted"] = time.monotonic()

    def wait_rejoined() -> None:
        deadline = time.monotonic() + REJOIN_TIMEOUT_S
        while time.monotonic() < deadline:
            running = broker_cluster(witness)
            if len(running) == len(brokers):
                seen_cluster["rejoined"] = time.monotonic()
                break
            time.sleep(3)
        seen_cluster["after"] = broker_cluster(witness)

    seen = _fault_under_load(users, make_client, fault_s, power_lost, recover, look, wait_rejoined,
                             inject_s=REJOIN_TIMEOUT_S)
    rejoined = seen_cluster.get("rejoined")
    return BrokerLossResult(**vars(seen), node=node, fault_s=fault_s, cluster_during=seen_cluster.get("during") or [],
                            cluster_after=seen_cluster.get("after") or [],
                            rejoined_after_s=rejoined - seen_cluster["restarted"] if rejoined else None,
                            tasks_lost=without_thumbnail(make_client(), seen.report),
                            converge_check=_operator("converge", "--check", "--detailed-exitcode")[0])


# --- drill 5: the Redis primary's host lost, failed over by the operator --------------------------

# The old primary's machine, started again, boots and its converge makes it a replica within this.
REDIS_REJOIN_TIMEOUT_S = 240.0


def redis_members() -> list[str]:
    """The Redis nodes of the lab, by member (0: the planned primary)."""
    from roles.redis.primary import redis_nodes

    return [n.name for n in redis_nodes(load_stack_config(STACK))]


def current_redis_primary() -> str:
    """The node of the Redis primary now, as the stack's `redis` record says."""
    found = operator_client("ssm").get_parameters(Names=["/photostack/lab/redis"])["Parameters"]
    stored = json.loads(found[0]["Value"]) if found else None
    return redis_members()[int(stored["primary"]) if stored else 0]


def redis_role(node: str, address: str) -> str:
    """INFO replication's role and primary of the Redis on lab host `node` ("master",
    "slave of 10.213.x.y:6379"), as its admin login sees it; '' when it does not answer."""
    script = (f'REDISCLI_AUTH="$(cat /etc/redis/admin.auth)" redis-cli --no-auth-warning --user admin -h {address} '
              "-p 6379 INFO replication | tr -d '\\r'")
    try:
        done = in_host(node, script)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return ""
    info = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    if info.get("role") == "slave":
        return f"slave of {info.get('master_host')}:{info.get('master_port')} (link {info.get('master_link_status')})"
    return info.get("role", "")


def missing_from_feeds(checker_of: dict[str, Client], report: LoadReport) -> list[str]:
    """Acknowledged posts not in their poster's feed (every feed holds its owner's photos): read
    page by page through the API, as the users read them."""
    missing = []
    for name, client in checker_of.items():
        wanted = {p for p, poster in report.posters.items() if poster == name}
        seen: set[str] = set()
        offset = 0
        while wanted - seen:
            status, body = client.json("GET", f"/api/feed?offset={offset}&limit=100")
            page = [str(p["id"]) for p in body.get("photos", [])] if status == 200 else []
            if not page:
                break
            seen.update(page)
            offset += len(page)
        missing += [f"{name}: photo {p} not in their feed" for p in sorted(wanted - seen)]
    return missing


def _settled_missing_from_feeds(checker_of: dict[str, Client], report: LoadReport,
                                patience_s: float = THUMBNAIL_PATIENCE_S) -> list[str]:
    """`missing_from_feeds`, asked again for up to `patience_s`: a post reaches its feed after its
    thumbnail task ran on the worker."""
    deadline, missing = time.monotonic() + patience_s, missing_from_feeds(checker_of, report)
    while missing and time.monotonic() < deadline:
        time.sleep(2)
        missing = missing_from_feeds(checker_of, report)
    return missing


@dataclass
class RedisLossResult(FaultResult):
    old: str
    new: str
    failover: subprocess.CompletedProcess[str]
    failover_s: float
    served_again_s: float | None  # `ops redis-failover` started to the first logged-in request served after it
    last_failure_s: float | None  # `ops redis-failover` started to the end of the last failed request
    feeds_dropped: int
    not_in_feeds: list[str]
    old_role_after_restart: str = ""
    rejoin: subprocess.CompletedProcess[str] | None = None  # `ops converge` once the old machine runs again
    rejoined_s: float | None = None  # the machine started again to its redis a replica of the new primary
    converge_check: subprocess.CompletedProcess[str] | None = None

    def figures(self) -> dict[str, str]:
        def seconds(value: float | None, otherwise: str) -> str:
            return f"{value:.1f} s" if value is not None else otherwise

        return {"requests": str(len(self.report.samples)), "from the loss to the end": self.report.describe(self.during),
                "after": self.report.describe(self.after), "ops redis-failover took": f"{self.failover_s:.1f} s",
                "served again after the command": seconds(self.served_again_s, "never"),
                "last failed request after the command": seconds(self.last_failure_s, "none failed after it"),
                "ops redis-failover's steps": "; ".join(f"{name} {secs}" for secs, name in re.findall(
                    r"^\s*([\d.]+s)\s+(.+)$", self.failover.stdout, re.M)),
                "feeds dropped (rebuilt from the shards on read)": str(self.feeds_dropped),
                "acknowledged posts missing from their poster's feed": str(len(self.not_in_feeds)),
                "old primary started again": f"{self.old_role_after_restart or 'not answering'} after "
                                             f"{seconds(self.rejoined_s, 'the timeout')}",
                "acknowledged writes lost": str(len(self.lost))}


def redis_primary_lost(plan: LabPlan, users: Users, make_client: Callable[[], Client]) -> RedisLossResult:
    """Drill 5: the Redis primary's host powered off at once under load (EC2 still says running):
    sessions, feeds and counters are gone from under the app. After NOTICE_S the operator runs
    `ops --stack lab redis-failover --yes` (powers the old machine off through EC2, promotes the
    replica, repoints the app and workers one node at a time, drops the feeds). The old machine is
    then started again while the load runs, and `ops converge` makes its redis a replica of the
    new primary; afterwards `ops converge --check` finds nothing to change."""
    old = current_redis_primary()
    address = {i.node: i.private_ip for i in plan.instances}
    times: dict[str, float] = {}
    outcome: dict[str, object] = {}

    def lose_and_fail_over() -> None:
        hosts.kill(old)
        times["lost"] = time.monotonic()
        time.sleep(NOTICE_S)
        times["command"] = time.monotonic()
        outcome["failover"], outcome["failover_s"] = _operator("redis-failover", "--yes")

    def start_old_machine() -> None:
        # Stopped by the failover; started again, as anyone (EC2's recovery, an operator) would.
        if outcome.get("failover") and outcome["failover"].returncode == 0:
            ec2 = operator_client("ec2")
            ec2.start_instances(InstanceIds=[node_instance("lab", old, ec2)["InstanceId"]])
            times["restarted"] = time.monotonic()

    # The old machine boots while the load runs on (HEALED_WATCH_S): the users must not notice.
    seen = _fault_under_load(users, make_client, fault_s=0.0, inject=lose_and_fail_over, heal_fault=start_old_machine,
                             inject_s=NOTICE_S + FAILOVER_TIMEOUT_S)
    failover = outcome["failover"]
    new = current_redis_primary()
    wanted = f"slave of {address[new]}:6379 (link up)"
    logged_in = [s for s in seen.report.samples if s.started >= times["command"]]
    served = min((s.started + s.seconds for s in logged_in if s.ok), default=None)
    failures = [s.started + s.seconds for s in LoadReport.failed(logged_in)]
    dropped = re.search(r"(\d+) feed\(s\) dropped", failover.stdout)
    result = RedisLossResult(
        **vars(seen), old=old, new=new, failover=failover,
        failover_s=outcome["failover_s"], served_again_s=served - times["command"] if served is not None else None,
        last_failure_s=max(failures) - times["command"] if failures else None,
        feeds_dropped=int(dropped.group(1)) if dropped else -1,
        not_in_feeds=_settled_missing_from_feeds(dict(users), seen.report))
    if failover.returncode != 0:
        return result
    # Started again, the machine runs its redis as it was (user_data runs at the first boot only):
    # a primary with no data that nothing uses. `ops converge` makes it a replica and puts it back
    # in the munin master's list (the runbook's step).
    deadline = time.monotonic() + REDIS_REJOIN_TIMEOUT_S
    while time.monotonic() < deadline:
        result.rejoin, _ = _operator("converge")
        if result.rejoin.returncode == 0:
            break
        time.sleep(3)  # still booting
    while time.monotonic() < deadline:
        result.old_role_after_restart = redis_role(old, address[old])
        if result.old_role_after_restart == wanted:
            result.rejoined_s = time.monotonic() - times["restarted"]
            break
        time.sleep(2)
    result.converge_check, _ = _operator("converge", "--check", "--detailed-exitcode")
    return result
