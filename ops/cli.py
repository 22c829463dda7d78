"""ops: stand up and run the photostack photo-sharing stack (one-box or AWS).

Exit codes (every command): 0 ok · 1 failed · 2 bad input, config or lock · 3 changes pending
(`converge --check --detailed-exitcode`). Errors go to stderr, one line each.
"""

from __future__ import annotations

import importlib
import sys
from contextlib import nullcontext
from types import ModuleType
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperGroup

from infra.config_errors import ConfigError
from ops import alerting, day2, plan_cli, recovery, shard_cli
from ops.exit_codes import BAD_INPUT, CHANGES_PENDING, FAILED
from ops.lock import LockHeld
from ops.options import JsonOption, StackOption, YesOption, confirm, refuse, stack_name

if TYPE_CHECKING:
    from ops.stack import Stack


class _OpsGroup(TyperGroup):
    """Bad input or a held lock in any command: each problem one line on stderr, exit 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            refuse(exc)
        except LockHeld as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(BAD_INPUT) from None
        except Exception as exc:
            if type(exc).__module__.split(".")[0] not in ("botocore", "boto3"):
                raise
            _report_to_sentry(exc)
            print(_aws_error(ctx, exc), file=sys.stderr)
            raise typer.Exit(FAILED) from None


def _aws_error(ctx: typer.Context, error: Exception) -> str:
    """One line for a failed AWS call: the stack, its region, the command and AWS's own message."""
    stack = (ctx.obj or {}).get("resolved") or (ctx.obj or {}).get("stack", "?")
    try:
        from infra.config import load_stack_config

        region = load_stack_config(stack).region
    except Exception:  # noqa: BLE001 — the line is still useful without the region
        region = "?"
    return (f"error: AWS call failed (stack {stack}, region {region}, step `ops {ctx.invoked_subcommand}`): "
            f"{type(error).__name__}: {error}")


# Imports here stay light (no pydantic, rich, Fabric, Sentry, Pulumi): `ops --help` pays only for
# typer; each command imports what it uses.
app = typer.Typer(cls=_OpsGroup, help=__doc__, no_args_is_help=True, add_completion=True,
                  pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]})
_debug = False


def load(ctx: typer.Context, stack: str | None = None):
    """The stack named by --stack, validated (exit 2 on bad config), with errors going to Sentry."""
    from ops.stack import Stack

    return Stack.for_command(stack_name(ctx, stack))


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"ops (photostack) {version('photostack')}")
        except PackageNotFoundError:
            print("ops (photostack) unknown version (not installed)")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    stack: Annotated[str, typer.Option("--stack", "-s", metavar="NAME",
                                       help="Stack name: reads Pulumi.<NAME>.yaml (every command).")] = "onebox",
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an unexpected error.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Stand up and run the photostack photo-sharing stack."""
    global _debug
    _debug = debug
    ctx.obj = {"stack": stack}


def _exit_for(results: list) -> None:
    if any(r.failed for r in results):
        raise typer.Exit(FAILED)


def _provisioner(stack: Stack) -> ModuleType | None:
    """The module that creates an AWS stack's hosts when the stack names one (`photostack:provisioner`)."""
    return importlib.import_module(stack.config.provisioner) if stack.config.provisioner else None


@app.command()
def check(ctx: typer.Context, stack: StackOption = None, json_: JsonOption = False) -> None:
    """Validate the stack config offline and say what it describes; touches nothing."""
    from infra.config import load_stack_config, placeholder_secrets
    from infra.targets import target_of
    from infra.topology import nodes

    name = stack_name(ctx, stack)
    config = load_stack_config(name)
    summary = {"stack": name, "target": target_of(config).name, "nodes": len(nodes(config)),
               "placeholderSecrets": placeholder_secrets(config)}
    if json_:
        import json

        print(json.dumps(summary))
        return
    print(f"stack '{name}': valid {summary['target']} config, {summary['nodes']} service nodes")
    for secret in summary["placeholderSecrets"]:
        print(f"warning: photostack:{secret} still holds the shipped placeholder; "
              f"set it with `pulumi config set --secret {secret}`", file=sys.stderr)


DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the steps; change nothing.")]


@app.command()
def up(ctx: typer.Context, stack: StackOption = None, dry_run: DryRunOption = False) -> None:
    """Bring the one-box up (its own sshd on loopback, then converge every role on it over SSH), or
    create an AWS stack's hosts through its provisioner (they converge themselves at boot)."""
    from ops import report

    loaded = load(ctx, stack)
    console = report.console()
    provisioner = _provisioner(loaded)
    if dry_run:
        day2._would([f"create the hosts of stack {loaded.name} through {loaded.config.provisioner}"] if provisioner
                    else _up_steps(loaded))
        return
    if provisioner is not None:  # an AWS stack whose hosts a provisioner creates (they converge at boot)
        # Not in the audit trail: the provisioner creates the stand-ins that would keep it (the lab's).
        with console.status(f"creating the hosts of stack {loaded.name}…"):
            result = provisioner.up(loaded.config, loaded.name)
        report.provisioned(console, result)
        if result.failed:
            raise typer.Exit(FAILED)
        return
    with console.status("starting the one-box sshd on loopback…"):
        loaded.prepare(required=True)
    with day2._changing(loaded, "up", force=False), console.status(f"converging {len(loaded.hosts)} host(s)…"):
        results = loaded.converge(loaded.hosts, progress=report.progress(console))
    report.recap(console, results)
    _exit_for(results)
    report.urls(console, loaded)


def _refuse_unprovisioned(loaded: Stack) -> None:
    """A dry run of `up` or `down` on a stack `pulumi up` provisions: the one line the real run
    refuses with (Stack.prepare, which does nothing else for such a stack), exit 2."""
    if loaded.target.provisioned_by_pulumi():
        loaded.prepare(required=True)


def _up_steps(loaded: Stack) -> list[str]:
    """What `up` does to a stack it converges (`--dry-run`): its own sshd, then every role."""
    _refuse_unprovisioned(loaded)
    box = loaded.config.onebox
    return [f"start the one-box sshd on {box.address}:{box.ssh_port} (its own keys in {loaded.state})",
            *(f"converge {host.name}: {', '.join(sorted(set(host.roles)))}" for host in loaded.hosts)]


@app.command()
def down(ctx: typer.Context, stack: StackOption = None, yes: YesOption = False, dry_run: DryRunOption = False) -> None:
    """Stop the one-box services (data is kept; `ops up` starts them again), or delete an AWS
    stack's hosts through its provisioner."""
    from ops import report

    loaded = load(ctx, stack)
    console = report.console()
    provisioner = _provisioner(loaded)
    if dry_run:
        if provisioner is None:
            _refuse_unprovisioned(loaded)
        day2._would([f"delete the hosts of stack {loaded.name} through {loaded.config.provisioner}"] if provisioner
                    else [f"stop the services of {host.name}, last role first (data is kept)" for host in loaded.hosts])
        return
    if provisioner is not None:
        with console.status(f"deleting the hosts of stack {loaded.name}…"):
            provisioner.down()
        console.print(f"stack {loaded.name}: hosts deleted")
        return
    confirm(f"stop every service of stack {loaded.name}", yes)
    loaded.prepare(required=True)
    with day2._changing(loaded, "down", force=False), console.status("stopping services…"):
        results = loaded.stop_services(loaded.hosts)
    loaded.close_access()
    report.recap(console, results)
    _exit_for(results)


@app.command()
def converge(
    ctx: typer.Context,
    check: Annotated[bool, typer.Option("--check", help="Change nothing; report what would change.")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Show unified diffs of files that change.")] = False,
    role: Annotated[list[str] | None, typer.Option("--role", "-r", metavar="ROLE", help="Only these roles (repeatable).")] = None,
    host: Annotated[str | None, typer.Option("--host", "-H", metavar="HOST", help="Only this host.")] = None,
    local: Annotated[bool, typer.Option("--local", help="Converge this machine as --host, without SSH (EC2 boot).")] = False,
    detailed_exitcode: Annotated[bool, typer.Option(
        "--detailed-exitcode", help="With --check: exit 3 when changes are pending (0: none, 1: failed).")] = False,
    json_: JsonOption = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Take the stack's lock even if someone holds it (says what that breaks).")] = False,
    stack: StackOption = None,
) -> None:
    """Converge hosts to their roles' desired state (idempotent; `--check --diff` to preview)."""
    from infra.inventory import select
    from ops import report

    if (detailed_exitcode or json_) and not check:
        raise ConfigError([f"{'--detailed-exitcode' if detailed_exitcode else '--json'}: goes with --check"])
    loaded = load(ctx, stack)
    loaded.local = local
    if local and not host:
        raise ConfigError(["--local needs --host NAME: the inventory name of this machine"])
    if role:
        from typing import get_args

        from infra.topology import Role

        known = get_args(Role)
        unknown = sorted(set(role) - set(known))
        if unknown:
            raise ConfigError([f"--role {r}: no such role ({', '.join(known)})" for r in unknown])
    hosts = select(loaded.hosts, name=host)
    if not hosts:
        raise ConfigError([f"--host {host}: no such host in stack {loaded.name}"])
    if not local:
        loaded.prepare()
    console = report.console(stderr=json_)
    # A host converging itself at boot (--local) and a --check change nothing others must wait for.
    changing = nullcontext([]) if check or local else day2._changing(
        loaded, "converge" + (f" --host {host}" if host else "") + "".join(f" --role {r}" for r in role or ()), force)
    with changing, console.status(f"{'checking' if check else 'converging'} {len(hosts)} host(s)…"):
        results = loaded.converge(hosts, set(role) if role else None, check=check,
                                  progress=report.progress(console, check))
    if json_:
        report.json_results(results)
    else:
        if diff:
            report.diffs(console, results)
        report.recap(console, results, check=check)
    _exit_for(results)
    if detailed_exitcode and any(r.changed for r in results):
        raise typer.Exit(CHANGES_PENDING)


secret_app = typer.Typer(help="Secrets: set one-box secrets (AWS: Pulumi secrets); rotate service secrets without downtime.",
                         no_args_is_help=True)
app.add_typer(secret_app, name="secret")


@secret_app.command("set")
def secret_set(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME", help="Secret key, e.g. pagerdutyRoutingKey.")],
               stack: StackOption = None,
               dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the step; change nothing.")] = False) -> None:
    """Store a secret for the one-box (value read from stdin, never from the command line)."""
    from infra.secrets import SecretStore

    loaded = load(ctx, stack)
    if loaded.target.provisioned_by_pulumi():  # its secrets are Pulumi's: a value stored here would be read by no one
        raise ConfigError([f"photostack:{name}: stack '{loaded.name}' keeps its secrets in Pulumi; "
                           f"`pulumi config set --secret -s {loaded.name} {name}`, then `pulumi up`"])
    store = SecretStore.for_stack(loaded.name)
    store.check_name(name)  # before reading a value for a name that could never be stored
    if dry_run:
        day2._would([f"read {name} from stdin and store it in {store.path} (owner-only)"])
        return
    value = sys.stdin.readline().strip() if not sys.stdin.isatty() else typer.prompt(name, hide_input=True)
    if not value:
        raise ConfigError([f"photostack:{name}: empty value"])
    with day2._changing(loaded, f"secret set {name}"):  # the name only: never the value
        store.set(name, value)
    print(f"stored {name} for stack {loaded.name}")


@secret_app.command("rotate")
def secret_rotate(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(
        metavar="NAME...", help="djangoSecretKey, redisPassword, rabbitmqPassword, dbPassword (several: one roll).")],
    stack: StackOption = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Take the stack's lock even if someone holds it (says what that breaks).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the steps; change nothing.")] = False,
) -> None:
    """Rotate service secrets without downtime: servers accept the old and the new value while the
    app and workers roll to the new one, then the old is retired (ops/rotation.py). Running it again
    after a failure resumes."""
    from ops import rotation
    from ops.remote import StepFailed

    for name in names:
        rotation.spec_for(name)  # an unknown NAME: one line, exit 2, before the stack is touched
    if dry_run:
        day2._would([step.text for step in rotation.steps_for(load(ctx, stack), names)])
        return
    loaded = load(ctx, stack)
    loaded.prepare()
    for name in names:
        if found := loaded.secret_store.rotating(name):
            print(f"note: resuming the interrupted rotation of {name} ({name}.{found[0]} is stored)")
    try:
        with day2._changing(loaded, f"secret rotate {' '.join(names)}", force):
            done = rotation.rotate(loaded, names, day2._progress)
    except (rotation.RotationStopped, StepFailed) as exc:
        day2._fail(str(exc))
    print(f"rotated {', '.join(names)} of stack {loaded.name} in {len(done)} steps; the old values are retired")


# Commands of each area live in their own module and register themselves here.
for area in (alerting, day2, plan_cli, shard_cli, recovery):
    area.register(app)


def _log_traceback() -> str:
    """Write the current exception's traceback to a new log file; its path."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="photostack-ops-error-", suffix=".log")  # owner-only (0600)
    with open(fd, "w") as handle:
        handle.write(" ".join(sys.argv) + "\n" + traceback.format_exc())
    return path


def _report_to_sentry(exc: Exception) -> None:
    """Send an unexpected failure to Sentry: a no-op unless the stack configured it (then
    Stack.for_command has initialised the SDK)."""
    import sentry_sdk

    sentry_sdk.capture_exception(exc)
    sentry_sdk.flush(timeout=5)


def main() -> None:
    """Entry point: one line per problem on stderr and the exit-code table, never a bare traceback."""
    try:
        app()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 — one line for the operator, the traceback to a log and Sentry
        if _debug:
            raise
        _report_to_sentry(exc)
        print(f"error: {type(exc).__name__}: {exc} (traceback in {_log_traceback()}; --debug shows it)",
              file=sys.stderr)
        sys.exit(FAILED)
