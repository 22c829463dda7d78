"""Offline plans shared by the infra tests: each stack's program runs under mocks once per session."""

from __future__ import annotations

from functools import cache
from typing import Any

from infra.config import load_stack_config
import pytest

from infra.offline_plan import Plan, PlannedResource, reveal, run_plan


@cache
def plan_of(stack: str) -> Plan:
    """The offline plan of a checked-in stack."""
    return run_plan(load_stack_config(stack), stack)


def by_name(plan: Plan) -> dict[str, PlannedResource]:
    """The plan's resources by name (a bucket's settings share its name: look those up by type)."""
    return {r.name: r for r in plan.resources}


def dependency(plan: Plan, resource: PlannedResource, prop: str) -> PlannedResource | None:
    """The resource input `prop` of `resource` came from."""
    urns = resource.property_dependencies.get(prop) or []
    found = [r for r in plan.resources if r.urn in urns]
    return found[0] if found else None


def role_tag(resource: PlannedResource | None) -> Any:
    return ((resource.inputs.get("tags") or {}) if resource else {}).get("photostack:role")


def planned_parameters(*stacks: str) -> dict[str, tuple[str, str]]:
    """Every SSM parameter the plans of `stacks` write (records and secrets): name → (type, planned value)."""
    return {r.inputs["name"]: (r.inputs["type"], reveal(r.inputs["value"]) if "value" in r.inputs else r.inputs["insecureValue"])
            for stack in stacks for r in plan_of(stack).of_type("aws:ssm/parameter:Parameter")}


def use_ssm(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Point boto3's SSM client at `url` (a local SSM server), with throwaway credentials."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", url)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
