"""`ops` commands of day-2 operations: deploy, rollback, status, failover, rebuild-replica,
replace-node, queue, cache.

Thin: parse, call ops/rollout.py, ops/failover.py, ops/maintenance.py, ops/overview.py, print. A failed step
prints one line naming the host and the step, and exits 1; bad input exits 2.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from ops import failover as fo
from ops import maintenance, overview, reshard, rollout, shard_cli
from ops.lock import LockHeld
from ops.remote import StepFailed
from ops.stack import Stack

console = Console()
StackName = Annotated[str, typer.Option("--stack", help="Stack name (Pulumi.<stack>.yaml).")]
Shard = Annotated[int, typer.Option("--shard", help="Physical shard number.")]


def _stack(ctx: typer.Context, stack: str | None) -> Stack:
    name = stack or (ctx.obj or {}).get("stack", "onebox")
    # A ConfigError propagates to ops.cli.main: one line per problem on stderr, exit 2.
    loaded = Stack.for_command(name)
    if loaded.config.target == "onebox":
        loaded.prepare_onebox()
    return loaded


def _fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _progress(step: str) -> None:
    console.print(f"[cyan]→[/cyan] {step}", highlight=False)


def _steps(log: fo.StepLog) -> None:
    for name, seconds in log.steps:
        console.print(f"  {seconds:6.2f}s  {name}", highlight=False)
    for warning in log.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    console.print(f"  {log.seconds:6.2f}s  total", highlight=False)


def _deployed(log: rollout.DeployLog, what: str) -> None:
    for note in log.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    for name, seconds in log.steps:
        console.print(f"  {seconds:6.2f}s  {name}", highlight=False)
    was = ", ".join(sorted({v for v in log.previous.values() if v})) or "nothing"
    console.print(f"{what} {log.version} (was {was}) in {log.seconds:.1f}s", highlight=False)
    for warning in log.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)


def deploy(
    ctx: typer.Context, stack: StackName = None,
    version: Annotated[str | None, typer.Option("--version", help="Git revision to deploy (default: the working tree); pinned until the next plain deploy.")] = None,
) -> None:
    """Rolling, zero-downtime deploy of the app and workers: one node at a time out of the load
    balancer, switched, restarted, healthy, back in; a failing node rolls the deploy back."""
    _roll(lambda progress: rollout.deploy(_stack(ctx, stack), version, progress), "deployed")


def rollback(ctx: typer.Context, stack: StackName = None) -> None:
    """Roll the app and workers back to the release before the deployed one (same rolling steps)."""
    _roll(lambda progress: rollout.rollback(_stack(ctx, stack), progress), "rolled back to")


def _roll(run, verb: str) -> None:
    """Run a deploy or rollback; a held lock exits 2, a failed step 1, each with one line."""
    try:
        log = run(_progress)
    except LockHeld as exc:
        _fail(str(exc), 2)
    except (rollout.DeployFailed, StepFailed) as exc:
        _fail(str(exc))
    _deployed(log, verb)


def status(ctx: typer.Context, stack: StackName = None) -> None:
    """Services, every paging alert's current value, shard roles, app health, lock, open alerts."""
    loaded = _stack(ctx, stack)
    view = overview.overview(loaded)
    services = Table("host", "role", "service", "state", title="services")
    for host, role, name, state in view.services:
        services.add_row(host, role, name, f"[green]{state}[/]" if state == "up" else f"[red]{state}[/]")
    console.print(services)
    shards = Table("shard", "cluster", "stored role", "answers as", title="shards")
    for shard, name, stored, live in view.shards:
        ok = live == stored.split()[0]
        shards.add_row(str(shard), name, stored, f"[green]{live}[/]" if ok else f"[red]{live}[/]")
    console.print(shards)
    readings = Table("host", "plugin.field", "value", "warning", "critical", "state", "runbook", title="alerts")
    colours = {"ok": "green", "warning": "yellow", "critical": "red", "unknown": "white"}
    for r in view.readings:
        readings.add_row(r.host, f"{r.plugin}.{r.field}", r.value, r.warning, r.critical,
                         f"[{colours[r.state]}]{r.state}[/]", r.runbook)
    console.print(readings)
    console.print(shard_cli.map_table(reshard.stored_map(loaded), reshard.pending(loaded)))
    for node, answer in view.health:
        console.print(f"health {node}: {answer}", highlight=False)
    console.print(f"deploy lock: {view.lock or 'free'}", highlight=False)
    console.print(f"open alerts: {', '.join(view.open_alerts) or 'none'}", highlight=False)
    if not view.healthy:
        raise typer.Exit(1)


def failover(ctx: typer.Context, shard: Shard, stack: StackName = None) -> None:
    """Fence shard N's primary, promote its replica, repoint pgbouncer, warm the cache."""
    loaded = _stack(ctx, stack)
    try:
        log = fo.failover(loaded, shard, _progress)
    except fo.FailoverError as exc:
        _fail(str(exc), 2)
    except StepFailed as exc:
        _fail(f"failover of shard {shard} stopped: {exc}")
    _steps(log)
    console.print(f"shard {shard} failed over; next: `ops rebuild-replica --shard {shard}`", highlight=False)


def rebuild_replica(
    ctx: typer.Context, shard: Shard, stack: StackName = None,
    member: Annotated[str | None, typer.Option("--member", help="Rebuild this replica (e.g. shard0r1) even if in service.")] = None,
) -> None:
    """Rebuild shard N's fenced (or named) member as a streaming replica and put it back in service."""
    loaded = _stack(ctx, stack)
    try:
        log = fo.rebuild_replica(loaded, shard, member, _progress)
    except (fo.FailoverError, ValueError) as exc:
        _fail(str(exc), 2)
    except StepFailed as exc:
        _fail(f"rebuild of shard {shard} stopped: {exc}")
    _steps(log)


def replace_node(ctx: typer.Context, node: Annotated[str, typer.Argument(help="Node name, e.g. app-0.")],
                 stack: StackName = None) -> None:
    """One-box: restart the node's services. AWS: terminate its instance for the fleet to replace."""
    loaded = _stack(ctx, stack)
    try:
        console.print(maintenance.replace_node(loaded, node), highlight=False)
    except ValueError as exc:
        _fail(str(exc), 2)
    except StepFailed as exc:
        _fail(str(exc))


queue_app = typer.Typer(help="Move waiting tasks off a backlogged queue and back (runbooks/queue_backlog.md).",
                        no_args_is_help=True)
QueueName = Annotated[str, typer.Option("--queue", help="Queue name (thumbnails, feed).")]
Limit = Annotated[int, typer.Option("--limit", help="Move at most this many messages.")]


@queue_app.command("drain")
def queue_drain(ctx: typer.Context, queue: QueueName = "feed", limit: Limit = 1_000_000, stack: StackName = None) -> None:
    """Move the queue's waiting messages to `<queue>.parked` (durable; nothing is lost)."""
    try:
        moved = maintenance.move_queue(_stack(ctx, stack), queue, maintenance.parked(queue), limit)
    except (ValueError, StepFailed) as exc:
        _fail(str(exc))
    console.print(f"moved {moved} message(s) from {queue} to {maintenance.parked(queue)}")


@queue_app.command("requeue")
def queue_requeue(ctx: typer.Context, queue: QueueName = "feed", limit: Limit = 1_000_000, stack: StackName = None) -> None:
    """Move the parked messages back to the queue, in order."""
    try:
        moved = maintenance.move_queue(_stack(ctx, stack), maintenance.parked(queue), queue, limit)
    except (ValueError, StepFailed) as exc:
        _fail(str(exc))
    console.print(f"moved {moved} message(s) from {maintenance.parked(queue)} back to {queue}")


cache_app = typer.Typer(help="The photo cache (Memcached).", no_args_is_help=True)


@cache_app.command("flush")
def cache_flush(ctx: typer.Context, stack: StackName = None) -> None:
    """Flush every Memcached node."""
    try:
        done = maintenance.flush_cache(_stack(ctx, stack))
    except StepFailed as exc:
        _fail(str(exc))
    console.print(f"flushed {', '.join(done)}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the day-2 commands to the `ops` app."""
    app.command("deploy")(deploy)
    app.command("rollback")(rollback)
    app.command("status")(status)
    app.command("failover")(failover)
    app.command("rebuild-replica")(rebuild_replica)
    app.command("replace-node")(replace_node)
    app.add_typer(queue_app, name="queue")
    app.add_typer(cache_app, name="cache")
