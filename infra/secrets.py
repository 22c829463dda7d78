"""Secrets by name, from the one place each target keeps them.

One-box: `secrets.json` (mode 0600) in the git-ignored state dir; service passwords are generated
on first use. AWS: Pulumi secrets in the stack config (decrypted by Pulumi inside the program,
written to SSM Parameter Store for the hosts). Values never go to logs, plans or diffs.

While a secret rotates (`ops secret rotate NAME`, ops/rotation.py) the store also holds the one
other value servers accept besides `NAME`'s: `NAME.pending` (the new value, before clients use it)
or `NAME.previous` (the old value, until it is retired). Which of the two is present says how far
an interrupted rotation got.
"""

from __future__ import annotations

import json
import secrets as token
from collections.abc import Callable
from pathlib import Path

from infra.atomic_file import write_atomic
from infra.config import GENERATED_SECRETS, SECRET_KEYS, ConfigError, StackConfig, required_secrets
from infra.state import state_dir

FILE_NAME = "secrets.json"
# Secrets `ops secret rotate` renews (ops/rotation.py says how each one overlaps).
ROTATABLE = ("djangoSecretKey", "redisPassword", "rabbitmqPassword", "dbPassword")
# The slots of a rotating secret's other accepted value, in the order a rotation fills them.
ROTATION_SLOTS = ("pending", "previous")


def slot_key(name: str, slot: str) -> str:
    """The store key of a rotating secret's other value, e.g. `redisPassword.pending`."""
    if slot not in ROTATION_SLOTS:
        raise ValueError(f"no rotation slot {slot!r}")
    return f"{name}.{slot}"


def rotating_value(get: Callable[[str], str | None], name: str) -> tuple[str, str] | None:
    """(slot, value) of the other value `name` accepts while it rotates, read with `get` from
    whichever store holds it (the state dir's file or SSM); None when it does not rotate."""
    for slot in ROTATION_SLOTS:
        value = get(slot_key(name, slot))
        if value is not None:
            return slot, value
    return None


class SecretStore:
    """The one-box secret store: a JSON map of secret name to value."""

    def __init__(self, path: Path):
        self.path = path
        self._values: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}

    @classmethod
    def for_stack(cls, stack: str) -> SecretStore:
        return cls(state_dir(stack) / FILE_NAME)

    def get(self, name: str) -> str | None:
        return self._values.get(name)

    def __getitem__(self, name: str) -> str:
        value = self._values.get(name)
        if value is None:
            raise ConfigError([f"photostack:{name}: missing secret; set it with `ops secret set {name}`"])
        return value

    @staticmethod
    def check_name(name: str) -> None:
        """One line naming the key when `name` is no secret photostack knows."""
        if name not in SECRET_KEYS:
            raise ConfigError([f"photostack:{name}: unknown secret (known: {', '.join(SECRET_KEYS)})"])

    def set(self, name: str, value: str) -> None:
        self.check_name(name)
        self._values[name] = value
        self._save()

    def rotating(self, name: str) -> tuple[str, str] | None:
        """(slot, value) of the other value `name` accepts while it rotates; None when it does not."""
        return rotating_value(self._values.get, name)

    def also_accepted(self, name: str) -> str | None:
        """The value servers accept besides `name`'s own while it rotates."""
        found = self.rotating(name)
        return found[1] if found else None

    def update(self, values: dict[str, str | None]) -> None:
        """Set (or, with None, remove) several keys in one atomic write: a rotation's swap of
        current and previous is never seen half-done."""
        for key, value in values.items():
            self.check_name(key.split(".", 1)[0])
            if value is None:
                self._values.pop(key, None)
            else:
                self._values[key] = value
        self._save()

    def ensure_generated(self) -> list[str]:
        """Generate any missing service password; returns the names generated."""
        missing = [n for n in GENERATED_SECRETS if n not in self._values]
        for name in missing:
            self._values[name] = token.token_urlsafe(32)
        if missing:
            self._save()
        return missing

    def check(self, config: StackConfig) -> None:
        """Raise one line per secret the stack needs and the store lacks."""
        problems = [
            f"photostack:{n}: missing secret; set it with `ops secret set {n}`"
            for n in required_secrets(config)
            if n not in self._values
        ]
        if problems:
            raise ConfigError(problems)

    def _save(self) -> None:
        write_atomic(self.path, json.dumps(self._values, indent=2, sort_keys=True), mode=0o600)
