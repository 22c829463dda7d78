"""`ops` commands for alerting: alerts, silence, alert-flush and pingdom sync.

Thin: parse, call monitoring/*, print. Bad input prints one line per problem on stderr and exits 2.
Every command honours the global `--stack` (`ops -s prod silence …`) or its own.
Pingdom endpoint overrides for drills and tests: PHOTOSTACK_PINGDOM_URL, PHOTOSTACK_PINGDOM_CA.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from ops.exit_codes import BAD_INPUT, FAILED
from ops.options import JsonOption, StackOption, refuse, stack_name

if TYPE_CHECKING:
    from infra.config import StackConfig

PINGDOM_URL_ENV = "PHOTOSTACK_PINGDOM_URL"
PINGDOM_CA_ENV = "PHOTOSTACK_PINGDOM_CA"


def _console():
    from rich.console import Console

    return Console()


def _fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    from rich.console import Console

    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _config(ctx: typer.Context, stack: str | None) -> tuple[str, StackConfig]:
    """The stack's name and validated config; a bad one: every problem on stderr, exit 2."""
    from infra.config import ConfigError, load_stack_config

    try:
        name = stack_name(ctx, stack)
        return name, load_stack_config(name)
    except ConfigError as exc:
        refuse(exc)


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def alerts(ctx: typer.Context, stack: StackOption = None,
           limit: Annotated[int, typer.Option(metavar="N", min=0, help="How many recent log lines to show.")] = 20,
           json_: JsonOption = False) -> None:
    """List open alerts, events waiting in the spool and the recent alert log.

    One-box: the state dir's. AWS: the monitoring host's, read over SSH (through the bastion)."""
    from infra.config import ConfigError
    from ops.remote import StepFailed
    from ops.stack import Stack

    stack, config = _config(ctx, stack)
    try:
        store = Stack(stack, config).alert_state(history=limit or None)
    except ConfigError as exc:
        refuse(exc)
    except StepFailed as exc:
        _fail(str(exc), code=FAILED)
    if json_:
        import json

        print(json.dumps({"stack": stack, "open": sorted(store.open_alerts()),
                          "queued": [{"queuedAt": i.queued_at, "event": i.event} for i in store.spooled()],
                          "history": list(store.history(limit))}, indent=2, default=str))
        return
    from rich.table import Table

    console = _console()
    table = Table("when", "status", "action", "severity", "dedup key", "summary / detail", title=f"alerts of {stack}")
    for item in store.spooled():
        payload = item.event.get("payload", {})
        table.add_row(_when(item.queued_at), "queued", item.event["event_action"], payload.get("severity", ""),
                      item.event["dedup_key"], payload.get("summary", ""))
    for record in store.history(limit):
        table.add_row(_when(record["at"]), record["status"], record["action"] or "", record["severity"] or "",
                      record["dedup_key"] or "", " — ".join(x for x in (record["summary"], record["detail"]) if x))
    console.print(table)
    opened = store.open_alerts()
    console.print(f"{len(opened)} open: " + (", ".join(sorted(opened)) or "none"), highlight=False)


def silence(ctx: typer.Context, stack: StackOption = None,
            duration: Annotated[str | None, typer.Option("--for", metavar="DURATION", help="How long, e.g. 30m, 2h, 1h30m.")] = None,
            host: Annotated[str | None, typer.Option(metavar="HOST", help="Only this host.")] = None,
            alert: Annotated[str | None, typer.Option(metavar="ALERT", help="Only this alert (runbook name, plugin or plugin.field).")] = None,
            list_: Annotated[bool, typer.Option("--list", help="Show active silences.")] = False,
            clear: Annotated[bool, typer.Option("--clear", help="Remove every silence.")] = False,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the steps; change nothing.")] = False) -> None:
    """Suppress pages during maintenance (`--for 30m [--host H] [--alert A]`), or `--list` / `--clear`.

    One-box: files in the state dir. AWS: host/alert silences in SSM (the munin master reads them),
    service-wide ones as PagerDuty maintenance windows; every operator sees the same."""
    if sum((duration is not None, list_, clear)) != 1:
        _fail("give exactly one of --for DURATION, --list or --clear")
    if (host or alert) and duration is None:
        _fail("--host and --alert go with --for")
    from contextlib import nullcontext

    from infra.targets import target_of
    from monitoring.integrations import maintenance_windows as mw
    from monitoring.alerts.silences import parse_duration, silence_store
    from ops import audit
    from ops.stack import Stack

    try:
        seconds = parse_duration(duration) if duration is not None else 0
    except ValueError as exc:
        _fail(str(exc))
    stack, config = _config(ctx, stack)
    console = _console()
    store = silence_store(stack, config)
    # Where operators share a cloud account and use PagerDuty, "everything" is the service's
    # maintenance window (on the one-box, a silence in the state dir).
    windows = config.alerting.pagerduty and not target_of(config).operators_share_machine()
    # Setting or clearing silences changes what pages, for every operator: it goes in the audit trail.
    command = "silence --clear" if clear else " ".join(
        ["silence", f"--for {duration}", *([f"--host {host}"] if host else []), *([f"--alert {alert}"] if alert else [])])
    if dry_run and not list_:
        from ops.day2 import _would

        whole = windows and not (host or alert)
        _would([f"remove the {len(store.active())} active silence(s)",
                *([f"end the ongoing PagerDuty maintenance windows of {config.environment}"] if windows else [])]
               if clear else [f"open a PagerDuty maintenance window of {config.environment} for {duration}" if whole else
                              f"add a silence host={host or '*'} alert={alert or '*'} for {duration} where the "
                              "alert hooks read it"])
        return
    notes: list[str] = []
    try:
        with nullcontext() if list_ else audit.recorded(Stack(stack, config), command, notes):
            client = mw.client_from_env() if windows and (clear or list_ or not (host or alert)) else None
            if clear:
                ended = mw.end_all(client, config.environment) if client else 0
                console.print(f"cleared {store.clear()} silence(s)" + (f", ended {ended} maintenance window(s)" if client else ""))
                return
            if list_:
                active = store.active()
                current = mw.ongoing(client, config.environment) if client else []
                if not active and not current:
                    console.print("no active silences")
                for s in active:
                    console.print(f"{s.id}  until {_when(s.until)}  host={s.host or '*'}  alert={s.alert or '*'}", highlight=False)
                for w in current:
                    console.print(f"{w.id}  until {w.end}  PagerDuty maintenance window (every alert)", highlight=False)
                return
            if client:
                window = mw.open_window(client, config.environment, seconds, f"ops silence --for {duration}")
                console.print(f"silenced every alert until {window.end}: PagerDuty maintenance window {window.id}",
                              highlight=False)
                return
            made = store.add(seconds, host=host, alert=alert)
            console.print(f"silenced host={host or '*'} alert={alert or '*'} until {_when(made.until)} (id {made.id})",
                          highlight=False)
    except mw.WindowError as exc:
        _fail(str(exc))
    finally:
        for note in notes:  # the trail could not be written
            typer.echo(f"note: {note}", err=True)


DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the steps; change nothing.")]


def alert_flush(ctx: typer.Context, stack: StackOption = None, dry_run: DryRun = False) -> None:
    """Send the events waiting in the spool to PagerDuty, oldest first.

    One-box: the state dir's spool. AWS: the monitoring host's, sent from there over SSH (through
    the bastion) with its own routing key and silences."""
    from infra.config import ConfigError
    from ops import audit
    from ops.remote import StepFailed
    from ops.stack import Stack

    stack, config = _config(ctx, stack)
    loaded = Stack(stack, config)
    notes: list[str] = []
    try:
        if dry_run:
            from ops.day2 import _would

            queued = loaded.alert_state(history=0).spooled()
            _would([f"send {len(queued)} spooled event(s) to PagerDuty, oldest first, from {loaded.alert_host()}"])
            return
        with audit.recorded(loaded, "alert-flush", notes):
            result = loaded.flush_alerts()
    except ConfigError as exc:
        refuse(exc)
    except StepFailed as exc:
        _fail(str(exc), code=FAILED)
    finally:
        for note in notes:  # the trail could not be written
            typer.echo(f"note: {note}", err=True)
    print(f"sent {len(result.sent)}, rejected {len(result.rejected)}, still queued {result.remaining}")
    if result.remaining:
        _fail(result.error or "events remain queued", code=1)


def pingdom_sync(ctx: typer.Context, stack: StackOption = None,
                 integration_id: Annotated[list[int] | None, typer.Option(
                     "--integration-id", metavar="ID",
                     help="Pingdom integration id of PagerDuty (repeatable; default: monitoring.pingdomPagerdutyIntegrationId).")] = None,
                 shouldcontain: Annotated[str, typer.Option(metavar="WORDS", help="Text /health must contain.")] = "ok",
                 dry_run: DryRun = False) -> None:
    """Create or update the HTTPS check of the stack's public /health (1-minute resolution).

    The Pingdom token is the stack's secret where its target keeps secrets (one-box: the state
    dir; AWS: the SSM parameter `pulumi up` writes), so every operator syncs the same check."""
    from infra.config import ConfigError
    from infra.pingdom import DEFAULT_BASE_URL, PingdomClient, PingdomError, check_name
    from ops import audit
    from ops.stack import Stack

    stack, config = _config(ctx, stack)
    if not config.monitoring.pingdom:
        _fail(f"photostack:monitoring.pingdom is off for stack '{stack}'")
    loaded = Stack(stack, config)
    try:
        token = loaded.target.secret_store(stack, fill=False)["pingdomToken"]
    except ConfigError as exc:
        refuse(exc)
    client = PingdomClient(token, base_url=os.environ.get(PINGDOM_URL_ENV) or DEFAULT_BASE_URL,
                           ca_bundle=os.environ.get(PINGDOM_CA_ENV) or None)
    configured = config.monitoring.pingdom_pagerduty_integration_id
    ids = tuple(integration_id or ()) or ((configured,) if configured is not None else ())
    check = (check_name(config.domain), config.domain, "/health", shouldcontain)
    notes: list[str] = []
    try:
        if dry_run:
            from ops.day2 import _would

            action, check_id = client.planned_check(*check, resolution=1, integration_ids=ids)
            _would([f"{action} the Pingdom check '{check[0]}'" + (f" ({check_id})" if check_id else "") +
                    f" of https://{config.domain}/health, integrations {', '.join(map(str, ids)) or 'none'}"])
            return
        with audit.recorded(loaded, "pingdom sync", notes):
            result = client.sync_check(*check, resolution=1, integration_ids=ids)
    except PingdomError as exc:
        _fail(str(exc), code=1)
    finally:
        for note in notes:  # the trail could not be written
            typer.echo(f"note: {note}", err=True)
    print(f"pingdom check {result.check_id}: {result.action}")


def register(app: typer.Typer) -> None:
    """Add the alerting commands to the `ops` app."""
    app.command("alerts")(alerts)
    app.command("silence")(silence)
    app.command("alert-flush")(alert_flush)
    pingdom = typer.Typer(help="Pingdom uptime checks.", no_args_is_help=True)
    pingdom.command("sync")(pingdom_sync)
    app.add_typer(pingdom, name="pingdom")
