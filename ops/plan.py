"""`ops plan`: the offline plan of a stack (Pulumi program under mocks) and the policy pack's verdict."""

from __future__ import annotations

import typer
from rich.console import Console

from infra.config import ConfigError, load_stack_config

EXIT_VIOLATIONS = 1
EXIT_BAD_CONFIG = 2


def plan(
    ctx: typer.Context,
    stack: str | None = typer.Option(None, "--stack", "-s", help="Stack to plan (default: the global --stack, else onebox)."),
) -> None:
    """Print what `pulumi up` would create for a stack, without contacting anything; check the policies."""
    # Pulumi and pulumi-aws take ~0.3 s to import: only `ops plan` pays for them.
    from infra.plan import run_plan
    from infra.plan_render import render_plan
    from infra.policy.evaluate import evaluate
    from infra.policy.policies import POLICIES

    stack = stack or ctx.find_root().params.get("stack") or "onebox"
    out = Console(highlight=False, markup=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
    try:
        config = load_stack_config(stack)
        if config.target == "onebox":
            out.print(f"stack '{stack}' targets onebox: no cloud resources to plan (converge it with `ops up`).")
            return
        result = run_plan(config, stack)
    except ConfigError as error:
        for problem in error.problems:
            err.print(problem)
        raise typer.Exit(EXIT_BAD_CONFIG) from None
    out.print(render_plan(result), end="")
    violations = evaluate(result)
    if violations:
        for violation in violations:
            err.print(f"policy violation: {violation}")
        raise typer.Exit(EXIT_VIOLATIONS)
    out.print(f"Policies: {len(POLICIES)} checked, no violations.")


def register(app: typer.Typer) -> None:
    """Add the `plan` command to the `ops` app."""
    app.command("plan")(plan)

