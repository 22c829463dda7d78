"""`ops` commands of day-2 operations: deploy, rollback, status, failover, rebuild-replica,
redis-failover, replace-node, queue, cache, audit.

Thin: parse, call ops/rollout.py, ops/failover.py, ops/redis_failover.py, ops/maintenance.py,
ops/overview.py, print. A failed step prints one line naming the host and the step on stderr, and
exits 1; bad input or a held lock exits 2.
Every command that changes the stack takes its one lock (`--force` takes it anyway), goes to the audit
trail with its outcome, and with `--dry-run` prints its steps and changes nothing. Each command
imports its work when it runs, so `ops --help` does not load Fabric and the roles.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from ops.exit_codes import BAD_INPUT, FAILED
from ops.options import JsonOption, StackOption, YesOption, confirm, stack_name

if TYPE_CHECKING:
    from ops import failover as fo
    from ops import rollout
    from ops.stack import Stack

StackName = StackOption
Shard = Annotated[int, typer.Option("--shard", metavar="N", min=0, help="Physical shard number.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the steps; change nothing.")]
Force = Annotated[bool, typer.Option("--force", help="Take the stack's lock even if someone holds it (says what that breaks).")]


class _LazyConsole:
    """rich's Console, created on first use (rich costs ~0.1 s to import)."""

    def __getattr__(self, name: str):
        from rich.console import Console

        real = Console()
        globals()["console"] = real
        return getattr(real, name)


console = _LazyConsole()


def _stack(ctx: typer.Context, stack: str | None, start: bool = True) -> Stack:
    """The loaded stack; `start`: bring the one-box's sshd up (commands that change things)."""
    from ops.stack import Stack

    # A ConfigError propagates to ops.cli.main: one line per problem on stderr, exit 2.
    loaded = Stack.for_command(stack_name(ctx, stack))
    if start:
        loaded.prepare()
    return loaded


def _confirmed(ctx: typer.Context, stack: str | None, action: str, yes: bool) -> Stack:
    """The loaded stack once `action` is confirmed (ops.options.confirm: on an AWS stack a script
    must pass --yes), then started like `_stack`'s: nothing is touched before the answer."""
    loaded = _stack(ctx, stack, start=False)
    # Where operators share a cloud account, a script must say yes; runbook automation on the
    # one-box goes ahead.
    confirm(f"{action} in stack {loaded.name}", yes, scripts_say_yes=not loaded.target.operators_share_machine())
    loaded.prepare()
    return loaded


def _fail(message: str, code: int = FAILED) -> NoReturn:
    from rich.console import Console

    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def _changing(loaded: Stack, command: str, force: bool | None = None) -> Iterator[list[str]]:
    """A command that changes the stack: recorded in the audit trail with its outcome and, unless
    `force` is None (no lock), run under the stack's one lock. Yields notes to print."""
    from ops import audit, lock

    notes: list[str] = []
    try:
        with audit.recorded(loaded, command, notes):
            if force is None:
                yield notes
            else:
                with lock.held(lock.stack_lock(loaded), command, notes, force):
                    yield notes
    finally:
        for note in notes:
            console.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)


def _would(steps: list[str]) -> None:
    console.print("would:", highlight=False)
    for number, step in enumerate(steps, 1):
        console.print(f"  {number}. {step}", highlight=False, soft_wrap=True)


def _dry(steps) -> None:
    """Print the steps a deploy or rollback would take; a refusal is one line, exit 2."""
    from ops import rollout

    try:
        _would(steps())
    except rollout.DeployFailed as exc:
        _fail(str(exc), BAD_INPUT)


def _progress(step: str) -> None:
    console.print(f"[cyan]→[/cyan] {step}", highlight=False)


def _steps(log: fo.StepLog) -> None:
    for note in log.notes:
        console.print(f"note: {note}", highlight=False)
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
    version: Annotated[str | None, typer.Option("--version", metavar="REV", help="Git revision to deploy (default: the working tree); pinned until the next plain deploy.")] = None,
    force: Force = False, dry_run: DryRun = False,
) -> None:
    """Rolling, zero-downtime deploy of the app and workers: one node at a time out of the load
    balancer, switched, restarted, healthy, back in; a failing node rolls the deploy back."""
    from ops import rollout

    if dry_run:
        _dry(lambda: rollout.deploy_steps(_stack(ctx, stack, start=False), version))
        return
    loaded = _stack(ctx, stack)
    _roll(loaded, f"deploy {version or 'working tree'}",
          lambda progress: rollout.deploy(loaded, version, progress, force=force), "deployed")


def rollback(ctx: typer.Context, stack: StackName = None, force: Force = False, dry_run: DryRun = False) -> None:
    """Roll the app and workers back to the release before the deployed one (same rolling steps)."""
    from ops import rollout

    if dry_run:
        _dry(lambda: rollout.rollback_steps(_stack(ctx, stack, start=False)))
        return
    loaded = _stack(ctx, stack)
    _roll(loaded, "rollback", lambda progress: rollout.rollback(loaded, progress, force=force), "rolled back to")


def _roll(loaded: Stack, command: str, run, verb: str) -> None:
    """Run a deploy or rollback (it takes the lock itself); a held lock exits 2, a failed step 1,
    each with one line."""
    from ops import rollout
    from ops.lock import LockHeld
    from ops.remote import StepFailed

    try:
        with _changing(loaded, command):
            log = run(_progress)
    except LockHeld as exc:
        _fail(str(exc), BAD_INPUT)
    except (rollout.DeployFailed, StepFailed) as exc:
        _fail(str(exc))
    _deployed(log, verb)


def status(ctx: typer.Context, stack: StackName = None, json_: JsonOption = False) -> None:
    """Services, every paging alert's current value, shard roles, app health, lock, open alerts.

    Read-only: it starts nothing (a stopped one-box shows its hosts unreachable); exit 1 when unhealthy."""
    from dataclasses import asdict

    from ops import overview, report

    loaded = _stack(ctx, stack, start=False)
    view = overview.overview(loaded)
    dashboards = report.dashboard_urls(loaded.config)
    if json_:
        import json

        print(json.dumps({
            "healthy": view.healthy,
            "services": [dict(zip(("host", "role", "service", "state"), row)) for row in view.services],
            "shards": [dict(zip(("shard", "cluster", "storedRole", "answersAs"), row)) for row in view.shards],
            "readings": [{**asdict(r), "state": r.state} for r in view.readings],
            "health": [dict(zip(("node", "answer"), row)) for row in view.health],
            "deployLock": view.lock or None, "openAlerts": None if view.alerts_unread else view.open_alerts,
            "openAlertsUnread": view.alerts_unread or None,
            "dashboards": dict(dashboards),
        }, indent=2))
        if not view.healthy:
            raise typer.Exit(FAILED)
        return
    from rich.table import Table

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
    from ops import reshard, shard_cli

    console.print(shard_cli.map_table(reshard.stored_map(loaded), reshard.pending(loaded)))
    for node, answer in view.health:
        console.print(f"health {node}: {answer}", highlight=False)
    console.print(f"deploy lock: {view.lock or 'free'}", highlight=False)
    opened = f"unknown ({view.alerts_unread})" if view.alerts_unread else ", ".join(view.open_alerts) or "none"
    console.print(f"open alerts: {opened}", highlight=False)
    for what, url in dashboards:
        console.print(f"{what}: {url}", highlight=False)
    if not view.healthy:
        raise typer.Exit(FAILED)


def failover(ctx: typer.Context, shard: Shard, stack: StackName = None, yes: YesOption = False,
             force: Force = False, dry_run: DryRun = False) -> None:
    """Fence shard N's primary, promote its replica, repoint pgbouncer, warm the cache."""
    from ops import failover as fo
    from ops.remote import StepFailed

    if dry_run:
        try:
            _would(fo.failover_steps(_stack(ctx, stack, start=False), shard))
        except fo.FailoverError as exc:
            _fail(str(exc), BAD_INPUT)
        return
    loaded = _confirmed(ctx, stack, f"fence shard {shard}'s primary and promote its replica", yes)
    try:
        with _changing(loaded, f"failover --shard {shard}", force):
            log = fo.failover(loaded, shard, _progress)
    except fo.FailoverError as exc:
        _fail(str(exc), BAD_INPUT)
    except StepFailed as exc:
        _fail(f"failover of shard {shard} stopped: {exc}")
    _steps(log)
    console.print(f"shard {shard} failed over; next: `ops rebuild-replica --shard {shard}`", highlight=False)


def redis_failover(ctx: typer.Context, stack: StackName = None, yes: YesOption = False, force: Force = False,
                   dry_run: DryRun = False) -> None:
    """Fence the Redis primary, promote its replica, repoint the app and workers, drop the feeds
    (rebuilt from the shards on read)."""
    from ops import redis_failover as rf
    from ops.remote import StepFailed

    if dry_run:
        try:
            _would(rf.failover_steps(_stack(ctx, stack, start=False)))
        except (rf.RedisFailoverError, LookupError) as exc:
            _fail(str(exc), BAD_INPUT)
        return
    loaded = _confirmed(ctx, stack, "fence the Redis primary and promote its replica", yes)
    try:
        with _changing(loaded, "redis-failover", force):
            log = rf.redis_failover(loaded, _progress)
    except (rf.RedisFailoverError, LookupError) as exc:
        _fail(str(exc), BAD_INPUT)
    except StepFailed as exc:
        _fail(f"Redis failover stopped: {exc}")
    _steps(log)
    console.print("Redis failed over; next, for the old primary: start its machine if it was powered off, "
                  "then `ops converge` makes it a replica (runbooks/redis_primary_down.md)", highlight=False)


def rebuild_replica(
    ctx: typer.Context, shard: Shard, stack: StackName = None,
    member: Annotated[str | None, typer.Option("--member", metavar="MEMBER", help="Rebuild this replica (e.g. shard0r1) even if in service.")] = None,
    force: Force = False, dry_run: DryRun = False,
) -> None:
    """Rebuild shard N's fenced (or named) member as a streaming replica and put it back in service."""
    from ops import failover as fo
    from ops.remote import StepFailed

    if dry_run:
        try:
            _would(fo.rebuild_steps(_stack(ctx, stack, start=False), shard, member))
        except fo.FailoverError as exc:
            _fail(str(exc), BAD_INPUT)
        return
    loaded = _stack(ctx, stack)
    try:
        with _changing(loaded, f"rebuild-replica --shard {shard}" + (f" --member {member}" if member else ""), force):
            log = fo.rebuild_replica(loaded, shard, member, _progress)
    except (fo.FailoverError, ValueError) as exc:
        _fail(str(exc), BAD_INPUT)
    except StepFailed as exc:
        _fail(f"rebuild of shard {shard} stopped: {exc}")
    _steps(log)


def replace_node(ctx: typer.Context, node: Annotated[str, typer.Argument(metavar="NODE", help="Node name, e.g. app-0.")],
                 stack: StackName = None, yes: YesOption = False, force: Force = False,
                 dry_run: DryRun = False,
                 peers: Annotated[bool, typer.Option(
                     "--peers/--no-peers", help="AWS: converge the other hosts to the replacement once it has "
                     "published its SSH host keys (nginx's upstreams, munin, ... follow its new address).")] = True,
                 ) -> None:
    """One-box: restart the node's services. AWS: relaunch its instance from its launch template,
    then converge its peers to it."""
    from ops import maintenance
    from ops.remote import StepFailed

    loaded = _stack(ctx, stack) if dry_run else _confirmed(ctx, stack, f"replace {node}", yes)
    try:
        if dry_run:  # reads only: no lock, nothing to audit
            done = maintenance.replace_node(loaded, node, dry_run=True, peers=peers)
        else:
            with _changing(loaded, f"replace-node {node}", force):
                done = maintenance.replace_node(loaded, node, peers=peers)
        console.print(done, highlight=False, soft_wrap=True)
    except ValueError as exc:
        _fail(str(exc), BAD_INPUT)
    except StepFailed as exc:
        _fail(str(exc))


queue_app = typer.Typer(help="Move waiting tasks off a backlogged queue and back (runbooks/queue_backlog.md).",
                        no_args_is_help=True)
QueueName = Annotated[str, typer.Option("--queue", metavar="QUEUE", help="Queue name (thumbnails, feed).")]
Limit = Annotated[int, typer.Option("--limit", metavar="N", min=1, help="Move at most this many messages.")]


@queue_app.command("drain")
def queue_drain(ctx: typer.Context, queue: QueueName = "feed", limit: Limit = 1_000_000, stack: StackName = None,
                yes: YesOption = False, dry_run: DryRun = False) -> None:
    """Move the queue's waiting messages to `<queue>.parked` (durable; nothing is lost)."""
    from ops import maintenance
    from ops.remote import StepFailed

    if dry_run:
        _would(maintenance.move_queue_steps(_stack(ctx, stack, start=False), queue, maintenance.parked(queue), limit))
        return
    loaded = _confirmed(ctx, stack, f"move up to {limit} waiting message(s) of {queue} to {maintenance.parked(queue)}",
                        yes)
    try:
        with _changing(loaded, f"queue drain --queue {queue}"):
            moved = maintenance.move_queue(loaded, queue, maintenance.parked(queue), limit)
    except (ValueError, StepFailed) as exc:
        _fail(str(exc))
    console.print(f"moved {moved} message(s) from {queue} to {maintenance.parked(queue)}")


@queue_app.command("requeue")
def queue_requeue(ctx: typer.Context, queue: QueueName = "feed", limit: Limit = 1_000_000, stack: StackName = None,
                  dry_run: DryRun = False) -> None:
    """Move the parked messages back to the queue, in order."""
    from ops import maintenance
    from ops.remote import StepFailed

    if dry_run:
        _would(maintenance.move_queue_steps(_stack(ctx, stack, start=False), maintenance.parked(queue), queue, limit))
        return
    loaded = _stack(ctx, stack)
    try:
        with _changing(loaded, f"queue requeue --queue {queue}"):
            moved = maintenance.move_queue(loaded, maintenance.parked(queue), queue, limit)
    except (ValueError, StepFailed) as exc:
        _fail(str(exc))
    console.print(f"moved {moved} message(s) from {maintenance.parked(queue)} back to {queue}")


cache_app = typer.Typer(help="The photo cache (Memcached).", no_args_is_help=True)


@cache_app.command("flush")
def cache_flush(ctx: typer.Context, stack: StackName = None, yes: YesOption = False, dry_run: DryRun = False) -> None:
    """Flush every Memcached node."""
    from ops import maintenance
    from ops.remote import StepFailed

    if dry_run:
        _would([f"flush {node}" for node in maintenance.flush_cache(_stack(ctx, stack, start=False), dry_run=True)])
        return
    loaded = _confirmed(ctx, stack, "flush every Memcached node", yes)
    try:
        with _changing(loaded, "cache flush"):
            done = maintenance.flush_cache(loaded)
    except StepFailed as exc:
        _fail(str(exc))
    console.print(f"flushed {', '.join(done)}", highlight=False)


def audit_trail(ctx: typer.Context, stack: StackName = None,
                limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, help="Show the last N commands.")] = 50) -> None:
    """The stack's audit trail: every changing `ops` command, who ran it, when, and how it ended."""
    from ops import audit

    # Read-only: the one-box's sshd need not run.
    for entry in audit.trail(_stack(ctx, stack, start=False)).read(limit):
        console.print(entry.line(), highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the day-2 commands to the `ops` app."""
    app.command("audit")(audit_trail)
    app.command("deploy")(deploy)
    app.command("rollback")(rollback)
    app.command("status")(status)
    app.command("failover")(failover)
    app.command("rebuild-replica")(rebuild_replica)
    app.command("redis-failover")(redis_failover)
    app.command("replace-node")(replace_node)
    app.add_typer(queue_app, name="queue")
    app.add_typer(cache_app, name="cache")
