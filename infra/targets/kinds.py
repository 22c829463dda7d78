"""Each target kind's config rules and defaults, by the kind `photostack:target` names: what the
config parser asks while it reads a stack file, before there is a Target (infra/targets/__init__.py
builds one from the parsed config, and imports the config model; this module does not).

`rules_for(kind)` is the one lookup by kind; tests/model/test_target_seam.py fails on any other
read of the kind outside infra/targets/.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from infra.targets.aws_config import AwsRules
from infra.targets.onebox_config import OneBoxRules

if TYPE_CHECKING:
    from infra.config import StackConfig
    from infra.config_checks import Problems


class KindRules(Protocol):
    """What a stack config must say on one target kind, and what it defaults to."""

    distro_postgres_major: int
    """The PostgreSQL major the target's OS ships: `postgres.version` when not pinned."""
    checks_aws_names: bool
    """Whether zones and instance types are checked against AWS's even when left at their defaults
    (elsewhere only where the stack file gives them)."""
    secrets_in_stack_file: bool
    """Whether secrets are Pulumi secrets of the stack file (so a missing one is a config problem),
    else they live elsewhere and are checked when the store is read."""

    def plain_secret_problem(self, name: str, value: Any) -> str | None:
        """Why the secret key `name` cannot have this value in the stack file, or None."""
        ...

    def own_secrets(self, config: StackConfig) -> list[str]:
        """The secrets a stack needs on this target only (beyond the service passwords and the
        integrations' own tokens)."""
        ...

    def problems(self, config: StackConfig) -> Problems:
        """(key path under `photostack:`, problem) for each of this target's own rules it breaks."""
        ...


RULES: dict[str, KindRules] = {"aws": AwsRules(), "onebox": OneBoxRules()}


def rules_for(kind: object) -> KindRules | None:
    """The rules of the target kind `kind` (as the stack file spells it); None for no such kind
    (the config model reports that)."""
    return RULES.get(kind) if isinstance(kind, str) else None


def secret_rules(kind: object) -> KindRules:
    """The rules the secrets of a stack file are held to: its kind's, or for no known kind the
    strictest (a Pulumi secret, never plain text)."""
    return rules_for(kind) or RULES["aws"]


def rules_of(config: StackConfig) -> KindRules:
    """The rules of a parsed stack config's target."""
    rules = rules_for(config.target)
    assert rules is not None, "the config model accepts only the kinds RULES holds"
    return rules
