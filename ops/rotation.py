"""`ops secret rotate NAME`: a new value for a service secret without downtime.

Every rotation is the same story, with an overlap in which servers accept both values:

    store the new value as NAME.pending          (clients still use the old one)
    servers accept old and new                   (converge the roles that check it)
    swap: NAME = new, NAME.previous = old        (one write; servers still accept both)
    roll the clients one node at a time          (app.env re-rendered, the rolling deploy's
                                                  out of rotation → restart → healthy → back in)
    retire: NAME.previous removed                (servers converge to the new value only)

What "servers accept both" means per secret:
- djangoSecretKey: the app checks its own signatures, so it is server and client. Django's
  SECRET_KEY_FALLBACKS: first every app node signs with the old key and accepts the new one (a
  roll), then signs with the new and accepts the old (a roll), then the old is dropped (a roll).
  Without the first roll a session signed by a rolled node would be rejected by one not yet rolled.
  Sessions in use meanwhile are re-signed with the new key (app/sessions.py); sessions idle through
  the whole rotation end with the old key.
- redisPassword: a Redis ACL user holds several passwords; the ACL file lists both hashes and is
  re-read with ACL LOAD (roles/redis), never a restart (the primary keeps no data on disk).
  Munin's login, derived from it, follows.
- rabbitmqPassword: RabbitMQ keeps one password per user, so each password has a login of its own
  (`photostack-<8 hex of an HMAC of it>`, roles/rabbitmq): both logins exist during the overlap,
  the app rolls to the new one, then the old login is deleted (RabbitMQ closes its connections;
  no process uses it any more). Chosen over two fixed logins used in turn, which would need a
  record of which one is current; a derived name needs no state beyond the secret.
- dbPassword: Postgres keeps one password per role, and pgbouncer logs in to Postgres with the
  client's own SCRAM keys (the same verifier on both sides), so the two values cannot share a
  login either: each has an app login `photostack_<8 hex>` (roles/postgres/auth.py app_login)
  acting as `photostack`; both are in Postgres and pgbouncer's userlist during the overlap, the
  app rolls to the new one, then the old login is dropped on every shard primary.

Several secrets rotate together in one command (`ops secret rotate djangoSecretKey redisPassword`):
their phases share the converges and the rolls.

Resuming: the slot that holds the other value says how far an interrupted rotation got
(`pending`: before the swap, `previous`: after it); running the command again finishes it.
The new value is generated here and goes only to the secret store and, through the converge
engine, into files on hosts: never to argv, the terminal or the audit trail.
"""

from __future__ import annotations

import secrets as token
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra.config import ConfigError
from infra.secrets import slot_key

if TYPE_CHECKING:
    from infra.inventory import Host
    from ops.stack import Stack

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Spec:
    """How one secret rotates."""

    name: str
    servers: tuple[str, ...]
    """Roles that check the secret: converged to accept both values, then the new one only."""
    clients: tuple[str, ...]
    """Fleet roles (app, worker) whose processes use it: rolled one node at a time after the swap."""
    self_checked: bool = False
    """The clients check it themselves (Django's key): the accept and retire phases are rolls too."""
    drops: tuple[str, ...] = ()
    """Roles whose hosts delete the old value's login after the clients rolled (one password per
    login: the old value has a login of its own)."""


SPECS: dict[str, Spec] = {
    spec.name: spec
    for spec in (
        Spec("djangoSecretKey", servers=(), clients=("app",), self_checked=True),
        Spec("redisPassword", servers=("redis", "munin_node"), clients=("app", "worker")),
        Spec("rabbitmqPassword", servers=("rabbitmq", "munin_node"), clients=("app", "worker"), drops=("rabbitmq",)),
        Spec("dbPassword", servers=("postgres", "pgbouncer"), clients=("app", "worker"), drops=("postgres",)),
    )
}


def spec_for(name: str) -> Spec:
    """The rotation of secret `name`; one line naming the rotatable ones when there is none."""
    if name not in SPECS:
        raise ConfigError([f"ops secret rotate {name}: not a rotatable secret (rotatable: {', '.join(SPECS)})"])
    return SPECS[name]


@dataclass(frozen=True)
class Step:
    """One step of a rotation: what it does (printed by --dry-run and as progress), its kind, the
    roles it converges or rolls and the secrets it is about."""

    kind: str  # store | converge | swap | roll | drop | retire
    text: str
    roles: tuple[str, ...] = ()
    names: tuple[str, ...] = ()


def _union(groups: list[tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(role for group in groups for role in group))


def plan(specs: list[Spec], rotating: str | None, hosts: list[Host]) -> list[Step]:
    """The steps left of rotating the secrets of `specs` together (their phases share converges and
    rolls); `rotating`: the slot an interrupted rotation left (None: a fresh rotation)."""
    def on(roles: tuple[str, ...]) -> str:
        names = sorted({h.name for h in hosts if set(roles) & set(h.roles)})
        return ", ".join(names) or "no host"

    def roll(roles: tuple[str, ...], what: str) -> Step:
        return Step("roll", f"roll {'/'.join(roles)} nodes one at a time ({on(roles)}): {what}", roles)

    names = tuple(spec.name for spec in specs)
    servers = _union([spec.servers for spec in specs if not spec.self_checked])
    signers = _union([spec.clients for spec in specs if spec.self_checked])

    def check(what: str, signing: str) -> list[Step]:
        """The servers' side: converge the roles that check a secret; roll the app where it checks
        its own (the Django key)."""
        steps = [Step("converge", f"converge {', '.join(servers)} on {on(servers)}: {what}", servers)] if servers else []
        return steps + ([roll(signers, signing)] if signers else [])

    use = "use the new value" + ("s" if len(names) > 1 else "") + ("; sign with the new key, accept the old one too"
                                                                  if signers else "")
    phases = [
        [Step("store", f"generate a new {', '.join(names)}; store it as "
                       f"{', '.join(slot_key(n, 'pending') for n in names)}", names=names)],
        check("accept the old and the new value", "sign with the old key, accept the new one too"),
        [Step("swap", f"{', '.join(names)} = the new value, "
                      f"{', '.join(slot_key(n, 'previous') for n in names)} = the old one", names=names)],
        [roll(_union([spec.clients for spec in specs]), use)],
        [Step("drop", f"delete the old {spec.name} login on {on(spec.drops)}", spec.drops, (spec.name,))
         for spec in specs if spec.drops],
        [Step("retire", f"remove {', '.join(slot_key(n, 'previous') for n in names)}: the old value is retired",
              names=names)],
        check("accept the new value only", "the new key only"),
    ]
    start = {None: 0, "pending": 1, "previous": 3}[rotating]
    return [step for phase in phases[start:] for step in phase]


def steps_for(stack: Stack, names: list[str]) -> list[Step]:
    """What `ops secret rotate NAME…` would do on `stack` now (resuming an interrupted rotation)."""
    specs = [spec_for(name) for name in dict.fromkeys(names)]
    slots = {spec.name: (found[0] if (found := stack.secret_store.rotating(spec.name)) else None) for spec in specs}
    if len(set(slots.values())) > 1:
        where = ", ".join(f"{n}: {slot or 'not rotating'}" for n, slot in slots.items())
        raise ConfigError([f"ops secret rotate {' '.join(slots)}: these are at different steps ({where}); "
                           "rotate each alone"])
    return plan(specs, next(iter(slots.values())), stack.hosts)


# --- running the steps --------------------------------------------------------------------------

def _converge(stack: Stack, roles: tuple[str, ...], what: str) -> None:
    from ops.remote import check_converged

    hosts = [h for h in stack.hosts if set(roles) & set(h.roles)]
    check_converged(stack.converge(hosts, set(roles)), what)


def _roll(stack: Stack, roles: tuple[str, ...], progress: Progress) -> None:
    """app.env re-rendered, then the `roles` nodes rolled one at a time (ops/rollout.py)."""
    from ops import rollout

    rollout.restart_fleet(stack, roles, progress)


class RotationStopped(RuntimeError):
    """A step failed; the message names it and how to finish."""


def rotate(stack: Stack, names: list[str], progress: Progress = lambda _: None) -> list[str]:
    """Rotate the secrets `names` together (resuming an interrupted rotation); returns the steps
    done. The caller holds the stack's lock. A failed step raises RotationStopped saying how to finish."""
    from ops.remote import StepFailed

    steps = steps_for(stack, names)
    done: list[str] = []
    for number, step in enumerate(steps):
        try:
            _run(stack, step, progress)
        except StepFailed as exc:
            if any(s.kind == "retire" for s in steps[:number]):  # the old values are out of the store
                rest = " ".join(f"--role {r}" for r in _union([s.roles for s in steps[number:]]))
                how = f"`ops secret rotate` cannot resume now: finish with `ops converge {rest}`"
            else:
                how = f"run `ops secret rotate {' '.join(names)}` again to resume"
            raise RotationStopped(f"rotation stopped at \"{step.text}\": {exc}; {how}") from exc
        done.append(step.text)
    return done


def _run(stack: Stack, step: Step, progress: Progress) -> None:
    store = stack.secret_store
    progress(step.text)
    if step.kind == "store":
        store.update({slot_key(name, "pending"): token.token_urlsafe(32) for name in step.names})
    elif step.kind == "converge":
        _converge(stack, step.roles, step.text)
    elif step.kind == "roll":
        _roll(stack, step.roles, progress)
    elif step.kind == "swap":
        for name in step.names:
            old, new = stack.secret(name), store.rotating(name)[1]
            # Ordered so that a stop half-way (SSM has no transaction) still stores both values.
            store.update({slot_key(name, "previous"): old, name: new, slot_key(name, "pending"): None})
    elif step.kind == "drop":
        from ops.remote import run_step

        for name in step.names:
            for host, script in DROPS[name](stack, store.rotating(name)[1]):
                run_step(host, stack.ssh, step.text, script)
    elif step.kind == "retire":
        store.update({slot_key(name, "previous"): None for name in step.names})


def _drop_broker_logins(stack: Stack, old: str) -> list[tuple[Host, str]]:
    """The old password's broker login, and the login of before rotations (`photostack`), on one
    broker node: users are cluster-wide."""
    from roles.rabbitmq.role import drop_logins, login_name

    host = next(h for h in stack.hosts if "rabbitmq" in h.roles)
    user = stack.context(host).defaults("rabbitmq")["rabbitmq_user"]
    return [(host, drop_logins([login_name(user, old), user]))]


def _drop_db_logins(stack: Stack, old: str) -> list[tuple[Host, str]]:
    """The old password's app login, on every shard primary (replicas follow)."""
    from roles.postgres import commands
    from roles.postgres.auth import app_login
    from roles.postgres.cluster import cluster_of

    login = app_login(old, stack.secret("scramSaltKey"))
    found = []
    for host in stack.hosts:
        ctx = stack.context(host)
        primaries = [c for c in (cluster_of(ctx, n) for n in host.nodes_of("postgres")) if c.is_primary]
        if primaries:
            found.append((host, " && ".join(commands.psql(c, commands.drop_login_sql(login)) for c in primaries)))
    return found


# Per secret with `drops`: (host, script) pairs deleting the old value's login.
DROPS: dict[str, Callable[[Stack, str], list[tuple[Host, str]]]] = {
    "rabbitmqPassword": _drop_broker_logins,
    "dbPassword": _drop_db_logins,
}
