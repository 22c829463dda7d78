"""Redis failover: the runbook redis_primary_down as code.

    redis_failover: fence the old primary (its machine powered off where the provider can, else
                    its redis stopped) → promote the replica with the most of the stream
                    (REPLICAOF NO ONE) → store the new primary → the redis role follows on every
                    running Redis host (the other replicas replicate from the new primary, in
                    place; on the one-box the old primary comes back as its replica) → Munin's
                    counters plugins follow → repoint the app and workers (app.env, one node at a
                    time) → drop the feeds (each rebuilt from the shards when next read)

The stored `redis` record (roles/redis/primary.py) is the switch: the roles that render from it
(infra/records.py `RENDERED_BY`) follow it, so a converge afterwards finds nothing to change. A
machine the failover powered off and someone started again runs its redis as it was (a primary
with no data, which nothing uses) until `ops converge` makes it a replica of the new primary; a
relaunched one (`ops replace-node`) converges as a replica at its first boot.

What it does not save: Redis replicates asynchronously, so what the old primary acknowledged and
had not yet sent when it died is lost (runbooks/redis_primary_down.md says what that is).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from infra.inventory import Host
from infra.topology import Node
from ops import markers, rollout
from ops.maintenance import Placed, node_services
from ops.remote import StepFailed, StepLog, check_converged, run_step
from ops.stack import Stack
from roles.redis import commands
from roles.redis.primary import primary_node, redis_nodes, save_primary

# Roles converged after the record changed: replication first (it must follow before anything
# else relies on it), then monitoring (the counters' plugins move to the new primary; the munin
# master lists the hosts that run, which a power-off changed); the app and workers are rolled one
# node at a time instead.
REPLICATION_ROLES = frozenset({"redis"})
MONITORING_ROLES = frozenset({"munin_node", "munin_master"})
FLEET_ROLES = ("app", "worker")


class RedisFailoverError(RuntimeError):
    """A Redis failover cannot start (no replica, none running …)."""


@dataclass(frozen=True)
class RedisMember:
    """A Redis node and the running host holding it (None: no running host, e.g. powered off)."""

    node: Node
    host: Host | None

    @property
    def name(self) -> str:
        return self.node.name


def members(stack: Stack) -> tuple[RedisMember, list[RedisMember]]:
    """The primary now (to fence) and the replicas with a running host (that may replace it)."""
    found = redis_nodes(stack.config)
    if len(found) < 2:
        raise RedisFailoverError(f"stack {stack.name} has no Redis replica to promote (redis.replicas is "
                                 f"{stack.config.redis.replicas}; set it to 1 or more and converge first)")
    primary = primary_node(stack.config, stack.name)
    running = {n.name: h for h in stack.hosts for n in h.nodes_of("redis")}
    replicas = [n for n in found if n != primary]
    candidates = [RedisMember(n, running[n.name]) for n in replicas if n.name in running]
    if not candidates:
        names = ", ".join(n.name for n in replicas)
        raise RedisFailoverError(f"no running Redis replica to promote: {names} has no running host")
    return RedisMember(primary, running.get(primary.name)), candidates


def failover_steps(stack: Stack) -> list[str]:
    """What `redis_failover` would do, read from the stack and its stored `redis` record (`--dry-run`)."""
    old, candidates = members(stack)
    names = ", ".join(m.name for m in candidates)
    chosen = names if len(candidates) == 1 else f"the replica with the most of the stream of {names}"
    where = f" on {old.host.name}" if old.host else " (no running host)"
    redis_hosts = ", ".join(_unique_names(m.host for m in candidates)) or "no host"
    fleet = ", ".join(b.name for b in rollout.batches(stack) if b.node.role in FLEET_ROLES)
    return [f"fence {old.name}{where} (its machine powered off through the provider where there is one, "
            "else its redis stopped)",
            f"promote {chosen} (REPLICAOF NO ONE)", "store the new Redis primary",
            f"converge redis on {redis_hosts} (replicas follow the new primary in place)",
            "converge monitoring (the counters' Munin plugins follow the new primary)",
            f"repoint the app and workers one node at a time ({fleet}): app.env, out of rotation, restart, "
            "healthy, back in", "drop every feed on the new primary (each rebuilt from the shards when next read)"]


def _unique_names(hosts: Iterable[Host | None]) -> list[str]:
    return list(dict.fromkeys(h.name for h in hosts if h is not None))


def redis_failover(stack: Stack, progress: Callable[[str], None] = lambda _: None) -> StepLog:
    """Promote a Redis replica in place of the primary (which is fenced first), repoint everyone."""
    old, candidates = members(stack)
    log = StepLog()
    log.timed(f"fence {old.name}", lambda: fence(stack, old, log), progress)
    # Chosen after the fence, when nothing more can arrive.
    new = most_advanced(stack, candidates, log)
    log.timed(f"promote {new.name}", lambda: run_step(new.host, stack.ssh, f"promote {new.name}",
                                                     commands.promote(*_endpoint(stack, new))), progress)
    log.timed("store the new Redis primary",
              lambda: save_primary(stack.config, stack.name, new.node.attrs["replica"]), progress)
    redis_hosts = [h for h in stack.hosts if h.nodes_of("redis")]
    log.timed("redis follows", lambda: check_converged(stack.converge(redis_hosts, set(REPLICATION_ROLES)),
                                                       "converging redis"), progress)
    monitors = [h for h in stack.hosts if h.nodes_of("redis") or "munin_master" in h.roles]
    log.timed("converge monitoring", lambda: _best_effort(log, "run `ops converge --role munin_node --role munin_master`", (
        lambda: check_converged(stack.converge(monitors, set(MONITORING_ROLES)), "converging monitoring"))), progress)
    log.timed("repoint the app and workers", lambda: rollout.restart_fleet(stack, FLEET_ROLES, progress), progress)
    dropped: list[str] = []
    log.timed("drop the feeds", lambda: dropped.append(run_step(
        new.host, stack.ssh, "drop the feeds", commands.drop_feeds(*_endpoint(stack, new))).strip()), progress)
    log.notes.append(f"{dropped[0]} feed(s) dropped on {new.name}: each is rebuilt from the shards when next read")
    if warning := markers.mark(stack, "failover", f"Redis: {new.name} promoted, {old.name} fenced"):
        log.warnings.append(warning)
    return log


def _endpoint(stack: Stack, member: RedisMember) -> tuple[str, int]:
    ctx = stack.context(member.host)
    return ctx.address(member.node), ctx.port(member.node)


def _best_effort(log: StepLog, then: str, action: Callable[[], object]) -> None:
    """Monitoring after a failover: a failure is a warning (Redis takes writes again), not a failed failover."""
    try:
        action()
    except StepFailed as exc:
        log.warnings.append(f"{exc}; {then}")


def fence(stack: Stack, member: RedisMember, log: StepLog) -> None:
    """Make sure the old primary takes no more writes: its machine powered off through the
    provider where it can (at its next boot it converges to a replica of the new primary), else
    its redis stopped over SSH. A provider error stops the command (StepFailed): nothing is
    promoted. An unreachable host without a provider is a warning: the app and workers are
    repointed away from it, and it comes back empty (no persistence on a primary)."""
    try:
        powered_off = stack.target.power_off(stack.name, member.name)
    except Exception as exc:  # noqa: BLE001 — any provider error: nothing is promoted
        raise StepFailed(f"{member.name}: power off through the provider: {exc}; nothing was promoted") from exc
    if powered_off is not None:
        log.notes.append(powered_off)
        stack.forget_inventory()  # the steps after it work with the hosts that run
        return
    if member.host is None:
        log.warnings.append(f"{member.name} has no running host: nothing to stop")
        return
    stop = " ".join(f"if ( {s.status} ) >/dev/null 2>&1; then {s.stop}; fi;"
                    for s in node_services(stack, Placed(member.node, member.host)))
    try:
        run_step(member.host, stack.ssh, f"stop {member.name}", stop)
    except StepFailed as exc:
        if "cannot reach" not in str(exc):
            raise
        log.warnings.append(f"could not stop {member.name} ({exc}); the app and workers are repointed away from it")


def most_advanced(stack: Stack, candidates: list[RedisMember], log: StepLog) -> RedisMember:
    """The replica that received the most of the old primary's stream (master_repl_offset). One
    candidate needs no asking; one that cannot answer is skipped with a warning."""
    if len(candidates) == 1:
        return candidates[0]
    received: dict[RedisMember, int] = {}
    for member in candidates:
        try:
            received[member] = int(run_step(member.host, stack.ssh, f"replication offset of {member.name}",
                                            commands.replication_offset(*_endpoint(stack, member))).strip())
        except (StepFailed, ValueError) as exc:
            log.warnings.append(f"{member.name} not considered: {exc}")
    if not received:
        raise RedisFailoverError(f"no Redis replica answered how much it received: {'; '.join(log.warnings)}")
    return max(received, key=received.__getitem__)
