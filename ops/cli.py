"""ops: stand up and run the photostack photo-sharing stack (one-box or AWS)."""

from __future__ import annotations

import sys
from contextlib import nullcontext

import sentry_sdk
import typer
from rich.console import Console

from infra.config import ConfigError
from infra.inventory import select
from infra.secrets import SecretStore
from ops import alerting, day2, plan, report
from ops.lock import LockHeld
from ops.stack import Stack

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()


def load(ctx: typer.Context) -> Stack:
    """The stack named by the global --stack option, validated (exit 2 on bad config)."""
    return Stack.for_command(ctx.obj["stack"])


@app.callback()
def main_options(
    ctx: typer.Context,
    stack: str = typer.Option("onebox", "--stack", "-s", help="Stack name: reads Pulumi.<stack>.yaml."),
) -> None:
    """Stand up and run the photostack photo-sharing stack."""
    ctx.obj = {"stack": stack}


def _exit_for(results: list) -> None:
    if any(r.failed for r in results):
        raise typer.Exit(1)


@app.command()
def up(ctx: typer.Context) -> None:
    """Bring the one-box up: its own sshd on loopback, then converge every role on it over SSH."""
    stack = load(ctx)
    with console.status("starting the one-box sshd on loopback…"):
        stack.prepare_onebox()
    with console.status(f"converging {len(stack.hosts)} host(s)…"):
        results = stack.converge(stack.hosts)
    report.recap(console, results)
    _exit_for(results)
    report.urls(console, stack)


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop the one-box services (data is kept); `ops up` starts them again."""
    stack = load(ctx)
    stack.prepare_onebox()
    with console.status("stopping services…"):
        results = stack.stop_services(stack.hosts)
    stack.stop_onebox()
    report.recap(console, results)
    _exit_for(results)


@app.command()
def converge(
    ctx: typer.Context,
    check: bool = typer.Option(False, "--check", help="Change nothing; report what would change."),
    diff: bool = typer.Option(False, "--diff", help="Show unified diffs of files that change."),
    role: list[str] = typer.Option(None, "--role", "-r", help="Only these roles (repeatable)."),
    host: str = typer.Option(None, "--host", "-H", help="Only this host."),
    local: bool = typer.Option(False, "--local", help="Converge this machine as --host, without SSH (EC2 boot)."),
    force: bool = typer.Option(False, "--force", help="Take the stack's lock even if someone holds it (says what that breaks)."),
) -> None:
    """Converge hosts to their roles' desired state (idempotent; `--check --diff` to preview)."""
    stack = load(ctx)
    stack.local = local
    if local and not host:
        raise ConfigError(["--local needs --host NAME: the inventory name of this machine"])
    if stack.config.target == "onebox" and not local:
        stack.prepare_onebox()
    hosts = select(stack.hosts, name=host)
    if not hosts:
        raise ConfigError([f"--host {host}: no such host in stack {stack.name}"])
    # A host converging itself at boot (--local) and a --check change nothing others must wait for.
    changing = nullcontext([]) if check or local else day2._changing(
        stack, "converge" + (f" --host {host}" if host else "") + "".join(f" --role {r}" for r in role or ()), force)
    try:
        with changing, console.status(f"{'checking' if check else 'converging'} {len(hosts)} host(s)…"):
            results = stack.converge(hosts, set(role) if role else None, check=check)
    except LockHeld as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    if diff:
        report.diffs(console, results)
    report.recap(console, results, check=check)
    _exit_for(results)


secret_app = typer.Typer(help="One-box secrets in the state dir (AWS uses Pulumi secrets).")
app.add_typer(secret_app, name="secret")


@secret_app.command("set")
def secret_set(ctx: typer.Context, name: str) -> None:
    """Store a secret for the one-box (value read from stdin, never from the command line)."""
    stack = load(ctx)
    value = sys.stdin.readline().strip() if not sys.stdin.isatty() else typer.prompt(name, hide_input=True)
    if not value:
        raise ConfigError([f"photostack:{name}: empty value"])
    SecretStore.for_stack(stack.name).set(name, value)
    console.print(f"stored {name} for stack {stack.name}")


# Commands of each area live in their own module and register themselves here.
for area in (alerting, day2, plan):
    area.register(app)


def main() -> None:
    """Entry point: one clear line per problem and exit 2 for bad config, never a traceback."""
    try:
        app()
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 — one line for the operator, the traceback to Sentry
        sentry_sdk.capture_exception(exc)
        sentry_sdk.flush(timeout=5)
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
