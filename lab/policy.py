"""IAM policy evaluation for the lab's AWS stand-in: Action and Resource, with an explicit Deny winning.

moto's own IAM mode checks actions only (a policy allowing `ssm:GetParameter` on one ARN allows
it on every parameter); AWS checks the resource too. This is the identity-policy part of AWS's
evaluation logic: a request is allowed when some statement allows it and none denies it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # "allowed", "explicit deny" or "no identity-based policy allows"


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _matches(patterns: list[str], value: str, case_sensitive: bool) -> bool:
    if not case_sensitive:  # action names are case-insensitive in IAM, ARNs are not
        return any(fnmatchcase(value.lower(), p.lower()) for p in patterns)
    return any(fnmatchcase(value, p) for p in patterns)


def _applies(statement: dict[str, Any], action: str, resource: str) -> bool:
    if "NotAction" in statement or "NotResource" in statement or "Condition" in statement:
        raise ValueError("NotAction, NotResource and Condition are not evaluated by the lab")
    return (_matches(_as_list(statement.get("Action")), action, case_sensitive=False)
            and _matches(_as_list(statement.get("Resource")), resource, case_sensitive=True))


def evaluate(documents: list[str | dict[str, Any]], action: str, resource: str) -> Decision:
    """Whether policy `documents` (JSON text or parsed) allow `action` on `resource`."""
    statements = []
    for document in documents:
        parsed = json.loads(document) if isinstance(document, str) else document
        found = parsed.get("Statement", [])
        statements += [found] if isinstance(found, dict) else found
    matching = [s for s in statements if _applies(s, action, resource)]
    if any(s.get("Effect") == "Deny" for s in matching):
        return Decision(False, "explicit deny")
    if any(s.get("Effect") == "Allow" for s in matching):
        return Decision(True, "allowed")
    return Decision(False, "no identity-based policy allows")
