"""`ops plan`: the offline plan of a stack (Pulumi program under mocks) and the policy pack's verdict."""

from __future__ import annotations

import json

import sys
from collections import Counter

import typer

from ops.exit_codes import FAILED
from ops.options import JsonOption, StackOption, refuse, stack_name


def plan(ctx: typer.Context, stack: StackOption = None, json_: JsonOption = False) -> None:
    """Print what `pulumi up` would create for a stack, without contacting anything; check the policies."""
    # Pulumi and pulumi-aws take ~0.3 s to import: only `ops plan` pays for them.
    from infra.config import ConfigError, load_stack_config, placeholder_secrets
    from infra.offline_plan import run_plan
    from infra.plan_render import render_plan
    from infra.targets import target_of
    from infra.policy.evaluate import evaluate
    from infra.policy.policies import POLICIES

    try:
        stack = stack_name(ctx, stack)
        config = load_stack_config(stack)
    except ConfigError as exc:
        refuse(exc)
    target = target_of(config)
    if not target.provisioned_by_pulumi():
        if json_:
            print(json.dumps({"stack": stack, "target": target.name, "resources": {}, "violations": []}))
        else:
            print(f"stack '{stack}' targets {target.name}: no cloud resources to plan (converge it with `ops up`).")
        return
    result = run_plan(config, stack)
    violations = evaluate(result)
    placeholders = placeholder_secrets(config)
    by_type = Counter(r.type for r in result.resources if r.custom)
    components = sum(not r.custom for r in result.resources)
    if json_:
        print(json.dumps({"stack": stack, "target": target.name, "resources": dict(sorted(by_type.items())),
                          "components": components, "violations": violations,
                          "placeholderSecrets": placeholders}, indent=2))
    else:
        print(render_plan(result), end="")
        print(_summary(by_type, components))
    for name in placeholders:
        print(f"warning: photostack:{name} still holds the shipped placeholder `secure:` value; "
              f"set it with `pulumi config set --secret -s {stack} {name}` before `pulumi up`", file=sys.stderr)
    if violations:
        for violation in violations:
            print(f"policy violation: {violation}", file=sys.stderr)
        raise typer.Exit(FAILED)
    if not json_:
        print(f"Policies: {len(POLICIES)} checked, no violations.")


def _summary(by_type: Counter, components: int) -> str:
    """One line: cloud resources by provider, apart from photostack's own components."""
    providers: Counter = Counter()
    for kind, count in by_type.items():
        providers[kind.split(":")[0]] += count
    parts = ", ".join(f"{n} {p}" for p, n in sorted(providers.items()))
    return f"Summary: {sum(by_type.values())} cloud resources ({parts}) in {components} components."


def register(app: typer.Typer) -> None:
    """Add the `plan` command to the `ops` app."""
    app.command("plan")(plan)

