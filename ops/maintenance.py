"""Runbook commands besides failover: replace a node, move queued tasks, flush the cache.

Command text is built by pure functions (tested for the exact text); `run_*` functions run it
on the right hosts through the engine's SSH layer.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from typing import Any

from infra.aws_inventory import node_instance
from infra.inventory import TAG_ROLE, TAG_STACK, Host
from infra.tagging import tags
from infra.topology import Node, nodes
from ops.remote import StepFailed, run_step
from ops.stack import Stack
from roles.engine.resources import Service

APP_ENV = "/etc/photostack/app.env"
RELEASE_PYTHON = "/opt/photostack/current/venv/bin/python"

# Nodes whose data makes "restart or replace" the wrong fix: they have their own runbook.
NOT_REPLACEABLE = {"postgres": "use `ops failover --shard N` / `ops rebuild-replica --shard N` (shard_primary_down.md)"}


@dataclass(frozen=True)
class Placed:
    """A node and the host running it."""

    node: Node
    host: Host


def find_node(stack: Stack, name: str) -> Placed:
    """A node by name (`app-0`, `redis-primary` …); ValueError naming the known ones."""
    for host in stack.hosts:
        for node in host.nodes:
            if node.name == name:
                return Placed(node, host)
    known = ", ".join(n.name for h in stack.hosts for n in h.nodes)
    raise ValueError(f"no node named {name!r} in stack {stack.name} (nodes: {known})")


def node_services(stack: Stack, placed: Placed) -> list[Service]:
    """The services that run `placed.node`: its role's services on its host, narrowed to the one
    naming the node (its name, port or cluster) where the host runs several of that role."""
    services = [s for s in stack.services(placed.host, {placed.node.role}).resources if isinstance(s, Service)]
    if len(services) <= 1:
        return services
    ctx = stack.context(placed.host)
    tokens = {placed.node.name, str(ctx.port(placed.node))}
    named = [s for s in services if tokens & set(s.name.replace("@", " ").split())]
    return named or services


def restart_script(services: list[Service]) -> str:
    """Restart each service in turn (stopped ones just start), stopping at the first that fails."""
    return " && ".join(s.restart for s in services)


def topology_node(stack: Stack, name: str) -> Node:
    """A node of the stack's topology by name, whether or not anything runs it now; ValueError
    naming the known ones."""
    known = nodes(stack.config)
    for node in known:
        if node.name == name:
            return node
    raise ValueError(f"no node named {name!r} in stack {stack.name} (nodes: {', '.join(n.name for n in known)})")


def replace_node(stack: Stack, name: str, dry_run: bool = False, peers: bool = True) -> str:
    """One-box: restart the node's services. AWS: relaunch its instance from its launch template
    (relaunch_node), no `pulumi up` needed, then (`peers`) converge the other hosts to it
    (converge_peers). Returns what was done (`dry_run`: the steps it would take, with nothing
    changed)."""
    # The node comes from the topology, not `stack.hosts`: on AWS those are only the running
    # instances (behind a running bastion), and a stopped instance is exactly one to replace.
    node = topology_node(stack, name)
    if node.role in NOT_REPLACEABLE:
        raise ValueError(f"{name}: {NOT_REPLACEABLE[node.role]}")
    if not stack.target.replaces_machines():
        placed = find_node(stack, name)
        services = node_services(stack, placed)
        if not services:
            raise ValueError(f"{name}: its role {node.role} runs no service on {placed.host.name}")
        if dry_run:
            return f"would restart {', '.join(s.name for s in services)} on {placed.host.name}"
        run_step(placed.host, stack.ssh, f"restart {name}", restart_script(services))
        return f"restarted {', '.join(s.name for s in services)} on {placed.host.name}"
    import boto3  # AWS only

    region = stack.config.region
    ec2, elbv2 = boto3.client("ec2", region_name=region), boto3.client("elbv2", region_name=region)
    s3 = boto3.client("s3", region_name=region)
    if dry_run:
        steps = plan_relaunch(stack.name, node, region, ec2, elbv2, s3).steps()
        if peers:
            steps.append(PEERS_STEP)
        return "would:\n" + "\n".join(f"  {number}. {step}" for number, step in enumerate(steps, 1))
    replacement = relaunch_node(stack.name, node, region, ec2, elbv2, s3)
    done = (f"replaced {replacement.old} with {replacement.new} ({name}) from {replacement.template} "
            f"($Latest) in {node.az}; it converges itself at first boot")
    if peers:
        try:
            converged = converge_peers(stack, name, replacement.new, ec2)
        except StepFailed as exc:
            raise StepFailed(f"{done}; but its peers did not converge to it: {exc}") from exc
        done += f", and its peers ({', '.join(converged)}) converged to it"
    return (f"{done}. Pulumi's state still names "
            f"{replacement.old}: in working hours, {adopt_commands(stack.name, node, replacement.new)}")


PEERS_STEP = ("once it has published its SSH host keys, converge every other host of the stack "
              "(their roles follow it to its new address)")


# How long a replacement may take to publish its SSH host keys (early in its first boot).
HOST_KEYS_TIMEOUT_S = 600.0
HOST_KEYS_POLL_S = 2.0


def wait_for_host_keys(ec2: Any, instance: str, timeout_s: float = HOST_KEYS_TIMEOUT_S) -> None:
    """Wait until the instance's console shows its SSH host keys (`ops` pins them before it
    touches any host of the stack); StepFailed after `timeout_s`."""
    from infra.host_keys import console_host_keys

    deadline = time.monotonic() + timeout_s
    while not console_host_keys(ec2.get_console_output(InstanceId=instance, Latest=True).get("Output") or ""):
        if time.monotonic() > deadline:
            raise StepFailed(f"{instance}: no SSH host keys in its console output after {timeout_s:.0f} s; "
                             "its peers were not converged: run `ops converge` once it has booted")
        time.sleep(HOST_KEYS_POLL_S)


def converge_peers(stack: Stack, name: str, instance: str, ec2: Any) -> list[str]:
    """Converge every other host of the stack with the inventory that holds the replacement, so
    the roles that render a peer's address (nginx's upstreams, munin's nodes, ...) follow it to
    its new private address without a human step; returns their names. The replacement itself
    converges at its first boot; this waits only until it has published its host keys."""
    from ops.remote import check_converged

    wait_for_host_keys(ec2, instance)
    stack.forget_inventory()
    peers = [h for h in stack.hosts if all(n.name != name for n in h.nodes)]
    check_converged(stack.converge(peers), f"converging the peers of {name}")
    return [h.name for h in peers]


# --- relaunching a node on AWS ----------------------------------------------------------------


@dataclass(frozen=True)
class Relaunch:
    """What `relaunch_node` did."""

    old: str
    new: str
    template: str


def _one(items: list[dict], what: str, key: str) -> str:
    if len(items) != 1:
        raise ValueError(f"{what}: expected one, found {len(items)}; is the stack up (`pulumi up`)?")
    return items[0][key]


def launch_template_id(ec2: Any, stack: str, role: str) -> str:
    """The role's launch template (infra/fleet.py tags it with the stack and the role)."""
    found = ec2.describe_launch_templates(Filters=[
        {"Name": f"tag:{TAG_STACK}", "Values": [stack]}, {"Name": f"tag:{TAG_ROLE}", "Values": [role]},
    ])["LaunchTemplates"]
    return _one(found, f"launch template of role {role} in stack {stack}", "LaunchTemplateId")


def private_subnet_id(ec2: Any, stack: str, zone: str) -> str:
    """The stack's private subnet in `zone` (infra/network.py's tags)."""
    from infra.network import ROLE as NETWORK_ROLE  # loads Pulumi: only when relaunching

    name = tags(stack, NETWORK_ROLE, f"private-{zone}")["Name"]
    found = ec2.describe_subnets(Filters=[
        {"Name": f"tag:{TAG_STACK}", "Values": [stack]}, {"Name": "tag:Name", "Values": [name]},
        {"Name": "availability-zone", "Values": [zone]},
    ])["Subnets"]
    return _one(found, f"private subnet {name} in {zone}", "SubnetId")


def release_bucket(s3: Any, stack: str) -> str:
    """The stack's release bucket: the one tagged with the stack and the release role."""
    wanted = {TAG_STACK: stack, TAG_ROLE: "release"}
    found = []
    for bucket in s3.list_buckets()["Buckets"]:
        try:
            tag_set = s3.get_bucket_tagging(Bucket=bucket["Name"])["TagSet"]
        except s3.exceptions.ClientError:  # an untagged bucket answers NoSuchTagSet
            continue
        if wanted.items() <= {t["Key"]: t["Value"] for t in tag_set}.items():
            found.append(bucket)
    return _one(found, f"release bucket of stack {stack}", "Name")


@dataclass(frozen=True)
class RelaunchPlan:
    """Everything a relaunch needs, looked up before anything changes."""

    node: Node
    old: str
    template: str
    subnet: str
    user_data: str
    targets: list[tuple[str, dict]]

    def steps(self) -> list[str]:
        """What `relaunch_node` does, in order (what `--dry-run` prints)."""
        groups = [f"{arn.rsplit('/', 2)[-2]}:{target.get('Port')}" for arn, target in self.targets]
        held = ", ".join(groups) or "no target group"
        return [
            f"deregister {self.old} from {held} and wait out the draining",
            f"terminate {self.old}",
            f"launch from launch template {self.template} ($Latest) in subnet {self.subnet} ({self.node.az}) "
            f"with the tags and user_data of {self.node.name}",
            f"register the new instance in {held}",
        ]


def plan_relaunch(stack: str, node: Node, region: str, ec2: Any, elbv2: Any, s3: Any) -> RelaunchPlan:
    """Look up what relaunching the node takes; ValueError naming what is missing."""
    from infra.bootstrap import render_user_data
    from infra.storage import BUNDLE_KEY

    old = node_instance(stack, node.name, ec2)["InstanceId"]
    template = launch_template_id(ec2, stack, node.role)
    subnet = private_subnet_id(ec2, stack, node.az)
    user_data = render_user_data(stack, node, region, release_bucket(s3, stack), BUNDLE_KEY)
    return RelaunchPlan(node, old, template, subnet, user_data, instance_targets(elbv2, old))


def relaunch_node(stack: str, node: Node, region: str, ec2: Any, elbv2: Any, s3: Any) -> Relaunch:
    """Replace the node's instance without `pulumi up`: terminate it (drained, terminate_instance),
    launch a new one from its role's launch template at $Latest (so with the template's image) in
    the node's AZ and private subnet, with the node's tags and a freshly rendered user_data, and
    put it in the target groups the old one was in. Everything is looked up before anything
    changes: a missing template or subnet is an error with the old instance untouched."""
    plan = plan_relaunch(stack, node, region, ec2, elbv2, s3)
    deregister_targets(elbv2, plan.targets)
    ec2.terminate_instances(InstanceIds=[plan.old])
    instance_tags = [{"Key": k, "Value": v} for k, v in tags(stack, node.role, node.name, node=node.name).items()]
    launched = ec2.run_instances(
        MinCount=1, MaxCount=1, SubnetId=plan.subnet, UserData=plan.user_data,
        LaunchTemplate={"LaunchTemplateId": plan.template, "Version": "$Latest"},
        TagSpecifications=[{"ResourceType": "instance", "Tags": instance_tags}],
    )["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[launched])
    for arn, target in plan.targets:
        elbv2.register_targets(TargetGroupArn=arn, Targets=[{**target, "Id": launched}])
    return Relaunch(plan.old, launched, plan.template)


def adopt_commands(stack: str, node: Node, instance: str) -> str:
    """The Pulumi commands that make the stack's state hold the relaunched instance instead of the
    terminated one (otherwise a refresh drops it and the next `pulumi up` launches a second one)."""
    fleet = f"fleet-{node.role}"
    parent = f"urn:pulumi:{stack}::photostack::photostack:fleet:Fleet::{fleet}"
    urn = f"urn:pulumi:{stack}::photostack::photostack:fleet:Fleet$aws:ec2/instance:Instance::{fleet}-{node.name}"
    return (f"run `pulumi state delete --target-dependents -s {stack} '{urn}'` then "
            f"`pulumi import -s {stack} --parent '{fleet}={parent}' aws:ec2/instance:Instance {fleet}-{node.name} {instance}` "
            f"and `pulumi up -s {stack}` (recreates its alarm and target-group attachment).")


def instance_targets(elbv2: Any, instance: str) -> list[tuple[str, dict]]:
    """(target group ARN, target) for every target group listing the instance, on any port."""
    found = []
    # Every page: the region's target groups (of every stack) can outnumber one response.
    for page in elbv2.get_paginator("describe_target_groups").paginate():
        for group in page["TargetGroups"]:
            arn = group["TargetGroupArn"]
            for d in elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]:
                if d["Target"]["Id"] == instance:
                    found.append((arn, d["Target"]))
    return found


def deregister_targets(elbv2: Any, targets: list[tuple[str, dict]]) -> None:
    """Deregister each (group, target), then wait until every group reports it gone: the ALB stops
    sending new requests at once and lets in-flight ones finish within the deregistration delay
    (terminating before that would cut them)."""
    for arn, target in targets:
        elbv2.deregister_targets(TargetGroupArn=arn, Targets=[target])
    for arn, target in targets:
        elbv2.get_waiter("target_deregistered").wait(TargetGroupArn=arn, Targets=[target])


def terminate_instance(stack: str, node: str, ec2: Any, elbv2: Any) -> str:
    """Take the node's one instance out of every target group holding it, wait out connection
    draining, and terminate it. Returns its id; ValueError when there is not exactly one."""
    instance = node_instance(stack, node, ec2)["InstanceId"]
    deregister_targets(elbv2, instance_targets(elbv2, instance))
    ec2.terminate_instances(InstanceIds=[instance])
    return instance


# --- queues ---------------------------------------------------------------------------------

PARKED_SUFFIX = ".parked"

_MOVE = """
import os, urllib.parse, amqp
url = urllib.parse.urlsplit(os.environ["PHOTOSTACK_BROKER_URL"])
conn = amqp.Connection(f"{url.hostname}:{url.port or 5672}", userid=urllib.parse.unquote(url.username or "guest"),
                       password=urllib.parse.unquote(url.password or "guest"),
                       virtual_host=urllib.parse.unquote(url.path[1:] or "/"))
conn.connect()
ch = conn.channel()
ch.confirm_select()  # each publish waits for the broker's confirm before the source is acked
ch.queue_declare(DST, durable=True, auto_delete=False)
moved = 0
while moved < LIMIT:
    msg = ch.basic_get(SRC)
    if msg is None:
        break
    ch.basic_publish(amqp.Message(msg.body, **msg.properties), exchange="", routing_key=DST)
    ch.basic_ack(msg.delivery_tag)
    moved += 1
print("moved", moved)
conn.close()
"""


def queue_move_script(source: str, target: str, limit: int) -> str:
    """Move up to `limit` ready messages from queue `source` to the durable queue `target`, each
    published with confirms before it is acked at the source: none lost (a crash in between
    can duplicate one; tasks are idempotent). Runs with the release's Python and broker URL."""
    program = _MOVE.replace("SRC", repr(source)).replace("DST", repr(target)).replace("LIMIT", str(limit))
    return f"set -a; . {APP_ENV}; set +a; {RELEASE_PYTHON} -c {shlex.quote(program)}"


def queue_host(stack: Stack) -> Host:
    """The host that moves messages: the first worker (it has the broker URL and the AMQP client)."""
    hosts = [h for h in stack.hosts if "worker" in h.roles]
    if not hosts:
        raise ValueError(f"stack {stack.name} has no worker host to reach the broker from")
    return hosts[0]


def move_queue_steps(stack: Stack, source: str, target: str, limit: int) -> list[str]:
    """What `move_queue` does (what `--dry-run` prints)."""
    return [f"on {queue_host(stack).name}: move up to {limit} ready message(s) from {source} to {target}, "
            "each confirmed by the broker before it is acked at the source"]


def move_queue(stack: Stack, source: str, target: str, limit: int) -> int:
    """Move messages on the first worker host (it has the broker URL and the AMQP client)."""
    hosts = [queue_host(stack)]
    output = run_step(hosts[0], stack.ssh, f"move {source} → {target}", queue_move_script(source, target, limit))
    words = output.split()
    if "moved" not in words:
        raise StepFailed(f"{hosts[0].name}: move {source} → {target}: unexpected output {output.strip()[-200:]!r}")
    return int(words[words.index("moved") + 1])


# --- cache ----------------------------------------------------------------------------------

def memcached_flush_script(address: str, port: int) -> str:
    """`flush_all` over the text protocol (bash /dev/tcp: no client needed on the host)."""
    return (
        f"exec 3<>/dev/tcp/{address}/{port} && printf 'flush_all\\r\\nquit\\r\\n' >&3 && "
        f"read -r -t 5 answer <&3; [ \"${{answer%$'\\r'}}\" = OK ] || {{ echo \"memcached {address}:{port}: $answer\"; exit 1; }}"
    )


def flush_cache(stack: Stack, dry_run: bool = False) -> list[str]:
    """Flush every Memcached node (photo records are read again from the shards); `dry_run`:
    name them, flush nothing."""
    done = []
    for host in stack.hosts:
        ctx = stack.context(host)
        for node in host.nodes_of("memcached"):
            address, port = ctx.bind_address, ctx.port(node)
            if not dry_run:
                run_step(host, stack.ssh, f"flush {node.name}", memcached_flush_script(address, port))
            done.append(f"{node.name} ({address}:{port})")
    return done


def parked(queue: str) -> str:
    return queue + PARKED_SUFFIX
