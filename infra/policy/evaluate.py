"""Run the policy pack over an offline plan, without the Pulumi CLI.

The SDK has no CLI-free runner, so this builds the same argument objects the analyzer would
(inputs for resource policies; state and property dependencies for stack policies, secrets
unwrapped as the engine does) and calls each policy's `validate`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any

from pulumi_policy import (
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.offline_plan import Plan, PlannedResource, reveal
from infra.policy.policies import POLICIES


@dataclass(frozen=True)
class Violation:
    """One policy violation."""

    policy: str
    urn: str
    message: str

    def __str__(self) -> str:
        return f"{self.policy}: {self.urn.rsplit('::', 1)[-1]}: {self.message}"


def _options(parent: str) -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], parent or None)


def resource_args(resource: PlannedResource) -> ResourceValidationArgs:
    """What a resource policy sees for `resource`: its inputs, secrets unwrapped."""
    return ResourceValidationArgs(
        resource.type, reveal(resource.inputs), resource.urn, resource.name, _options(resource.parent), None
    )


def stack_args(resources: list[PlannedResource]) -> StackValidationArgs:
    """What a stack policy sees: every custom resource's state, linked by property dependencies."""
    custom = [r for r in resources if r.custom]
    by_urn: dict[str, PolicyResource] = {}
    for r in custom:
        by_urn[r.urn] = PolicyResource(r.type, reveal(r.outputs), r.urn, r.name, _options(r.parent), None, None, [], {})
    for r in custom:
        deps = {key: [by_urn[u] for u in urns if u in by_urn] for key, urns in r.property_dependencies.items()}
        by_urn[r.urn].property_dependencies = deps
        by_urn[r.urn].dependencies = [d for found in deps.values() for d in found]
    return StackValidationArgs(list(by_urn.values()))


def _settle(result: Any) -> None:
    if isawaitable(result):
        asyncio.run(result)


def evaluate(plan: Plan, policies: list[Policy] = POLICIES) -> list[Violation]:
    """Every violation of `policies` in `plan` (empty: the plan passes)."""
    violations: list[Violation] = []
    stack = stack_args(plan.resources)
    for policy in policies:
        if isinstance(policy, ResourceValidationPolicy):
            for resource in plan.resources:
                if not resource.custom:
                    continue

                def report(message: str, urn: str | None = None, resource: PlannedResource = resource) -> None:
                    violations.append(Violation(policy.name, urn or resource.urn, message))

                _settle(policy.validate(resource_args(resource), report))
        elif isinstance(policy, StackValidationPolicy):

            def report_stack(message: str, urn: str | None = None) -> None:
                violations.append(Violation(policy.name, urn or "stack", message))

            _settle(policy.validate(stack, report_stack))
    return violations
