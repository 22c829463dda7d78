"""Runbook commands besides failover: replace a node, move queued tasks, flush the cache.

Command text is built by pure functions (tested for the exact text); `run_*` functions run it
on the right hosts through the engine's SSH layer.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from infra.inventory import TAG_NODE, TAG_STACK, Host
from infra.topology import Node
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
    """Stop then start each service (stopped ones just start)."""
    steps = []
    for s in services:
        steps.append(f"{{ ( {s.status} ) >/dev/null 2>&1 && ( {s.stop} ) || true; }}")
        steps.append(f"( {s.start} )")
    return " && ".join(steps)


def replace_node(stack: Stack, name: str) -> str:
    """One-box: restart the node's services. AWS: terminate its instance; the fleet (`pulumi up`,
    cloud-init converge) brings a new one. Returns what was done."""
    placed = find_node(stack, name)
    if placed.node.role in NOT_REPLACEABLE:
        raise ValueError(f"{name}: {NOT_REPLACEABLE[placed.node.role]}")
    if stack.config.target == "onebox":
        services = node_services(stack, placed)
        if not services:
            raise ValueError(f"{name}: its role {placed.node.role} runs no service on {placed.host.name}")
        run_step(placed.host, stack.ssh, f"restart {name}", restart_script(services))
        return f"restarted {', '.join(s.name for s in services)} on {placed.host.name}"
    import boto3  # AWS only

    instance = terminate_instance(stack.name, name, boto3.client("ec2", region_name=stack.config.region),
                                  boto3.client("elbv2", region_name=stack.config.region))
    return f"terminated {instance} ({name}); run `pulumi up -s {stack.name}` to bring its replacement"


def terminate_instance(stack: str, node: str, ec2, elbv2) -> str:
    """Deregister the node's instance from every target group (connection draining) and terminate it."""
    found = ec2.describe_instances(Filters=[
        {"Name": f"tag:{TAG_STACK}", "Values": [stack]}, {"Name": f"tag:{TAG_NODE}", "Values": [node]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]},
    ])
    ids = [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]
    if not ids:
        raise ValueError(f"{node}: no live instance tagged {TAG_STACK}={stack}, {TAG_NODE}={node}")
    for group in elbv2.describe_target_groups()["TargetGroups"]:
        health = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]
        targets = [d["Target"] for d in health if d["Target"]["Id"] in ids]
        if targets:
            elbv2.deregister_targets(TargetGroupArn=group["TargetGroupArn"], Targets=targets)
    ec2.terminate_instances(InstanceIds=ids)
    return ", ".join(ids)


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


def move_queue(stack: Stack, source: str, target: str, limit: int) -> int:
    """Move messages on the first worker host (it has the broker URL and the AMQP client)."""
    hosts = [h for h in stack.hosts if "worker" in h.roles]
    if not hosts:
        raise ValueError(f"stack {stack.name} has no worker host to reach the broker from")
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


def flush_cache(stack: Stack) -> list[str]:
    """Flush every Memcached node (photo records are read again from the shards)."""
    done = []
    for host in stack.hosts:
        ctx = stack.context(host)
        for node in host.nodes_of("memcached"):
            address, port = ctx.bind_address, ctx.port(node)
            run_step(host, stack.ssh, f"flush {node.name}", memcached_flush_script(address, port))
            done.append(f"{node.name} ({address}:{port})")
    return done


def parked(queue: str) -> str:
    return queue + PARKED_SUFFIX
