"""What a role sees when it declares its desired state for one host."""

from __future__ import annotations

import importlib
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Callable

import jinja2

from infra import role_settings
from infra.config import StackConfig
from infra.inventory import Host
from infra.targets import Target, target_of
from infra.topology import Node
from roles.engine.resources import DesiredState

ROLES_DIR = Path(__file__).resolve().parent



def double_quoted(value: str) -> str:
    """`value` as one double-quoted argument of a config format with C-style escapes in double
    quotes (redis.conf, curl's config file): quotes, backslashes, spaces and `#` stay in the value."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@cache
def _environment(role: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROLES_DIR / role / "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # For files a shell sources (`set -a; . file`): each value one literal word, whatever it holds.
    env.filters["shell_quote"] = lambda value: shlex.quote(str(value))
    return env


@dataclass(frozen=True)
class RoleContext:
    """A host, the stack around it, and helpers to render templates and find peers."""

    config: StackConfig
    stack: str
    host: Host
    hosts: tuple[Host, ...]
    secret: Callable[[str], str]
    also_accepted: Callable[[str], str | None] = lambda name: None
    """While secret `name` rotates, the other value servers accept besides `secret(name)`."""

    @property
    def target(self) -> Target:
        """Where the stack runs (infra/targets/): what differs between targets is asked of it."""
        return target_of(self.config)

    @property
    def bind_address(self) -> str:
        """The address services bind to: loopback on one-box, the private address on AWS."""
        return self.target.bind_address(self.host)

    def accepted(self, name: str) -> list[str]:
        """Every value of secret `name` a server accepts: its own, and while it rotates
        (ops/rotation.py) the other one; clients use `secret(name)` alone."""
        current, other = self.secret(name), self.also_accepted(name)
        return [current] if other is None or other == current else [current, other]

    def template(self, role: str, name: str, **variables: Any) -> str:
        """Render `roles/<role>/templates/<name>` with the role's defaults, the context and `variables`."""
        managed_by = (
            f"Managed by photostack (roles/{role}/templates/{name}); "
            "local changes are overwritten by the next converge."
        )
        values = {**self.defaults(role), "ctx": self, "config": self.config, "managed_by": managed_by}
        return _environment(role).get_template(name).render(**values, **variables)

    def defaults(self, role: str) -> dict[str, Any]:
        """A role's settings on this stack: its declared defaults with the stack's
        `photostack:roles.<role>` overrides on top."""
        return role_settings.effective(role, self.config.roles)

    def host_of(self, node: Node) -> Host:
        """The host that runs `node`."""
        for host in self.hosts:
            if node in host.nodes:
                return host
        raise LookupError(f"no host runs {node.name}")

    def port(self, node: Node) -> int:
        """The port `node` listens on."""
        return self.target.port(node.role, node.index)

    def address(self, node: Node) -> str:
        """The address peers use to reach `node`."""
        return self.target.address(self.host_of(node))


def desired_state(role: str, ctx: RoleContext) -> DesiredState:
    """Ask `roles/<role>/role.py` what it wants on `ctx.host`."""
    module = importlib.import_module(f"roles.{role}.role")
    return module.desired(ctx)
