"""An AWS stack's secrets in SSM Parameter Store, read (and, by `ops secret rotate`, written)
with boto3: what hosts and operators use. infra/secrets_store.py is the Pulumi program's side,
which writes them at `pulumi up`; this module imports no Pulumi (hosts do not install it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from infra.config import ConfigError


def parameter_name(stack: str, name: str) -> str:
    """The SSM parameter holding secret `name` of `stack`."""
    return f"/photostack/{stack}/{name}"


def ssm_secret_reader(stack: str, ssm_client: Any) -> Callable[[str], str]:
    """On a host: a `secret(name)` function reading `/photostack/<stack>/<name>` from SSM (boto3
    client); a missing parameter raises ConfigError."""
    return SsmSecrets(stack, ssm_client).__getitem__


class SsmSecrets:
    """An AWS stack's secrets as `ops secret rotate` reads and writes them (the operator's
    credentials): SecureString parameters, a rotating secret's other value beside it under
    `<name>.pending` or `<name>.previous` (infra/secrets.py)."""

    def __init__(self, stack: str, ssm_client: Any) -> None:
        self.stack, self.ssm = stack, ssm_client
        # Every role of every host asks for the overlap values while a converge renders: one read
        # each per process (SSM throttles GetParameter), forgotten when this store writes them.
        self._read: dict[str, str | None] = {}

    def _get(self, key: str) -> str | None:
        if key not in self._read:
            try:
                answer = self.ssm.get_parameter(Name=parameter_name(self.stack, key), WithDecryption=True)
                self._read[key] = answer["Parameter"]["Value"]
            except self.ssm.exceptions.ParameterNotFound:
                self._read[key] = None
        return self._read[key]

    def get(self, name: str) -> str | None:
        return self._get(name)

    def __getitem__(self, name: str) -> str:
        value = self._get(name)
        if value is None:
            raise ConfigError([f"photostack:{name}: no SSM parameter {parameter_name(self.stack, name)}; run `pulumi up -s {self.stack}`"])
        return value

    def rotating(self, name: str) -> tuple[str, str] | None:
        from infra.secrets import rotating_value

        return rotating_value(self._get, name)

    def also_accepted(self, name: str) -> str | None:
        found = self.rotating(name)
        return found[1] if found else None

    def update(self, values: dict[str, str | None]) -> None:
        """Write in the order given (SSM has no transaction): callers order the keys so that a
        stop half-way still leaves both values stored."""
        for key, value in values.items():
            name = parameter_name(self.stack, key)
            self._read.pop(key, None)
            if value is None:
                try:
                    self.ssm.delete_parameter(Name=name)
                except self.ssm.exceptions.ParameterNotFound:
                    pass
            else:
                self.ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)
