"""The stack config's error type and the stack name rule: light enough for `ops --help` to import.

infra/config.py (pydantic, ~0.3 s to import) re-exports both.
"""

from __future__ import annotations

import re

# Pulumi's stack name rule (sdk/go/common/tokens: "alphanumeric, hyphens, underscores, or periods", ≤ 100).
STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class ConfigError(Exception):
    """A stack config that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def check_stack_name(stack: str) -> str:
    """`stack` if Pulumi accepts it as a stack name (so it is never a path either); ConfigError otherwise."""
    if not stack:
        raise ConfigError(["--stack: empty stack name; give one, e.g. --stack onebox"])
    if not STACK_NAME.match(stack):
        shown = stack if len(stack) <= 40 else stack[:39] + "…"
        raise ConfigError([f"--stack: {shown!r} is not a Pulumi stack name "
                           "(letters, digits, '-', '_' and '.', at most 100)"])
    return stack


def show(value: str, limit: int = 60) -> str:
    """A user's value quoted for an error line, cut short so the line stays one readable line."""
    text = value if len(value) <= limit else value[: limit - 1] + "…"
    return repr(text)
