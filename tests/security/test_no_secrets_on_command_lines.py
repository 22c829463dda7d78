"""No password or SCRAM verifier reaches a command line (`ps` shows every argv to every user): the
postgres and pgbouncer roles' checks and changes carry them on stdin only."""

from __future__ import annotations

from infra.config import load_stack_config
from infra.inventory import onebox_hosts
from roles.context import RoleContext
from roles.converge import host_state
from roles.engine.resources import Command
from roles.postgres.auth import USER_SECRETS, scram_verifier


def test_postgres_and_pgbouncer_commands_hold_no_password_or_verifier(state_root) -> None:
    config = load_stack_config("onebox")
    hosts = tuple(onebox_hosts(config))
    secret = lambda name: f"sentinel-{name}-value"  # noqa: E731
    ctx = RoleContext(config, "onebox", hosts[0], hosts, secret)
    verifiers = [scram_verifier(user, secret(name), secret("scramSaltKey")) for user, name in USER_SECRETS.items()]
    forbidden = [secret(name) for name in USER_SECRETS.values()] + [v.split("$", 1)[1] for v in verifiers]

    commands = [text for r in host_state(ctx, {"postgres", "pgbouncer"}).resources if isinstance(r, Command)
                for text in (r.run, r.unless)]

    assert commands, "the roles declare commands"
    leaked = [(value, text[:80]) for text in commands for value in forbidden if value in text]
    assert leaked == []
