"""Options every `ops` command shares, and the one rule for which stack a command works on."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from infra.config_errors import ConfigError, check_stack_name
from ops.exit_codes import BAD_INPUT

StackOption = Annotated[
    str | None,
    typer.Option("--stack", "-s", metavar="NAME", help="Stack name (default: the global --stack, else onebox)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def stack_name(ctx: typer.Context, given: str | None) -> str:
    """The command's own --stack if given, else the global one (`ops -s prod CMD`); a valid Pulumi name."""
    root = ctx.find_root()
    if given is None:
        given = root.obj.get("stack", "onebox") if isinstance(root.obj, dict) else "onebox"
    name = check_stack_name(given)
    if isinstance(root.obj, dict):
        root.obj["resolved"] = name  # for error lines that name the stack
    return name


def confirm(action: str, yes: bool, scripts_say_yes: bool = False) -> None:
    """Ask before a disruptive action at a terminal; `--yes` goes ahead. Without a terminal
    (scripts, runbook automation) it goes ahead too, unless `scripts_say_yes` (an AWS stack: a
    script must pass --yes, or exits 2 saying so). A "no" exits 2 with nothing done."""
    import sys

    if yes:
        return
    # A terminal on both ends: someone can answer and see the question (captured output: a script).
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        if scripts_say_yes:
            typer.echo(f"error: {action}: no terminal to confirm on; pass --yes", err=True)
            raise typer.Exit(BAD_INPUT)
        return
    if not typer.confirm(f"{action}?", default=False, err=True):
        typer.echo("nothing done", err=True)
        raise typer.Exit(BAD_INPUT)


def refuse(error: ConfigError) -> NoReturn:
    """Bad input: every problem one line on stderr, exit 2."""
    for problem in error.problems:
        typer.echo(problem, err=True)
    raise typer.Exit(BAD_INPUT)
