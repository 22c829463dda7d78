"""Role settings: each role declares the settings a user may change, with their defaults, in
`roles/<role>/defaults.yaml`; a stack overrides any of them with `photostack:roles.<role>.<key>`.

This module is the one reader of those files: the config checks validate a stack's overrides
against it (an undeclared key or a value of another kind is a config error, found by
`ops check` before anything runs), and the roles read their effective settings through it.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROLES_DIR = Path(__file__).resolve().parent.parent / "roles"
_ROLE_NAME = re.compile(r"[a-z][a-z0-9_]*")


def known_roles() -> list[str]:
    """Every role with a directory under roles/ (the engine's own package is not a role)."""
    return sorted(path.parent.name for path in ROLES_DIR.glob("*/role.py"))


@cache
def declared(role: str) -> dict[str, Any] | None:
    """The settings `role` declares, with their defaults ({} for a role that declares none);
    None when there is no such role."""
    if not _ROLE_NAME.fullmatch(role) or role not in known_roles():
        return None
    path = ROLES_DIR / role / "defaults.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def effective(role: str, overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A role's settings for one stack: its declared defaults with the stack's overrides on top."""
    return {**(declared(role) or {}), **overrides.get(role, {})}


def kind_problem(value: Any, default: Any) -> str | None:
    """Why `value` cannot replace `default` (a different kind of value), or None. A whole number
    may replace a decimal one; nothing replaces a boolean but a boolean (YAML's 1 is not true)."""
    if default is None:
        return None
    if isinstance(default, bool) or isinstance(value, bool):
        fits = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        fits = isinstance(value, (int, float))
    else:
        fits = isinstance(value, type(default))
    if fits:
        return None
    return f"must be {_kind(default)} like its default {default!r}, not {_kind(value)}"


def _kind(value: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
             list: "a list", dict: "a mapping"}
    return names.get(type(value), type(value).__name__)
