"""Shard failover and replica rebuild: the runbook shard_primary_down as code.

    failover:        fence the old primary (its machine powered off where the provider can) → archive the WAL the replica holds → promote it →
                     store the new primary → repoint pgbouncer everywhere → warm the new
                     primary's page cache → converge monitoring → archive the new timeline,
                     fresh backup
    rebuild_replica: start a powered-off member → rebuild the fenced member as a replica of the new primary → wait until it
                     streams → put it back in service (synchronous standby, read pool) →
                     converge the rest (other members, monitoring)

The stored primaries record (infra/shardstore.py) is the switch: the roles that render from it
(infra/records.py `RENDERED_BY`) follow it, so any converge afterwards keeps the new topology,
and after `rebuild-replica` a converge finds nothing to change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from infra.inventory import Host, select
from infra.shardstore import primaries_store
from infra.topology import nodes
from ops import markers
from ops.remote import StepFailed, StepLog, check_converged, run_step
from ops.stack import Stack
from roles.postgres import commands, pgbackrest
from roles.postgres.cluster import Cluster, cluster_of, shard_clusters


# A machine started again boots systemd and sshd: well within this on EC2 and in the lab.
BOOT_TIMEOUT_S = 180.0


class FailoverError(RuntimeError):
    """A failover or rebuild cannot start (bad shard, no replica in service …)."""


@dataclass(frozen=True)
class Member:
    """A cluster and the host running it."""

    cluster: Cluster
    host: Host


def members(stack: Stack, shard: int) -> list[Member]:
    """Every member of physical shard `shard`, primary first, with its host."""
    if not 0 <= shard < stack.config.postgres.physical_shards:
        raise FailoverError(f"--shard {shard}: no such physical shard (0..{stack.config.postgres.physical_shards - 1})")
    result = []
    for host in stack.hosts:
        ctx = stack.context(host)
        for node in host.nodes_of("postgres"):
            if node.attrs["shard"] == shard:
                result.append(Member(cluster_of(ctx, node), host))
    if not result:  # an AWS stack whose instances are not (all) up
        raise FailoverError(f"shard {shard}: no running host holds its members")
    order = [c.name for c in shard_clusters(stack.context(stack.hosts[0]), shard)]
    return sorted(result, key=lambda m: order.index(m.cluster.name))


def _failover_members(stack: Stack, shard: int) -> tuple[Member, list[Member]]:
    """The primary to fence and the replicas in service that may replace it."""
    found = members(stack, shard)
    candidates = [m for m in found[1:] if m.cluster.in_service]
    if not candidates:
        raise FailoverError(f"shard {shard}: no replica in service to promote (run `ops rebuild-replica --shard {shard}`)")
    return found[0], candidates


def failover_steps(stack: Stack, shard: int) -> list[str]:
    """What `failover` would do, read from the stack and its stored primaries (`--dry-run`)."""
    old, candidates = _failover_members(stack, shard)
    names = ", ".join(m.cluster.name for m in candidates)
    chosen = names if len(candidates) == 1 else f"the replica with the most WAL of {names}"
    pgbouncers = ", ".join(h.name for h in select(stack.hosts, role="pgbouncer"))
    return [f"fence {old.cluster.name} on {old.host.name} (its machine powered off through the provider where "
            "there is one, else the cluster stopped and its data dir moved aside)", f"promote {chosen}",
            f"store the new primary of shard {shard}", f"repoint pgbouncer on {pgbouncers}",
            "warm the new primary's page cache", "converge monitoring"]


def failover(stack: Stack, shard: int, progress: Callable[[str], None] = lambda _: None) -> StepLog:
    """Promote shard `shard`'s replica in place of its primary (which is fenced first)."""
    old, candidates = _failover_members(stack, shard)
    log = StepLog()

    store = primaries_store(stack.config, stack.name)
    log.timed(f"fence {old.cluster.name} on {old.host.name}", lambda: fence(stack, old, log), progress)
    # Chosen after the fence, when no more WAL can arrive.
    new = most_advanced(stack, candidates, log)
    log.timed(f"archive the WAL {new.cluster.name} holds", lambda: _best_effort(
        log, "the archive may miss the old primary's last segments", lambda: run_step(
            new.host, stack.ssh, "push finished WAL", pgbackrest.push_finished_wal(
                new.cluster, commands.psql_value(new.cluster, pgbackrest.RECEIVING_SEGMENT)))), progress)
    log.timed(f"promote {new.cluster.name}", lambda: run_step(new.host, stack.ssh, f"promote {new.cluster.name}",
                                                              commands.promote(new.cluster)), progress)
    log.timed("store the new primary", lambda: store.save(store.load().failed_over(shard, new.cluster.replica)), progress)
    log.timed("repoint pgbouncer", lambda: repoint_pgbouncer(stack), progress)
    log.timed(f"warm {new.cluster.name}'s cache", lambda: run_step(new.host, stack.ssh, "vmtouch",
                                                                   commands.warm_cache(new.cluster)), progress)
    # The other roles that render from the primaries (monitoring) follow; postgres does not: it
    # would rebuild the fenced member now, which is `rebuild-replica`'s step (or the next converge's).
    log.timed("converge monitoring", lambda: _best_effort(
        log, "run `ops rebuild-replica` (it converges monitoring too)", lambda: check_converged(
            stack.follow("primaries", done=frozenset({"pgbouncer", "postgres"})), "converging monitoring")), progress)
    if warning := markers.mark(stack, "failover", f"shard {shard}: {new.cluster.name} promoted, {old.cluster.name} fenced"):
        log.warnings.append(warning)
    _best_effort(log, f"run `ops backup --shard {shard}`", lambda: after_promotion(stack, shard, log, progress))
    return log


def after_promotion(stack: Stack, shard: int, log: StepLog, progress: Callable[[str], None]) -> None:
    """A new timeline began (failover or in-place restore): archive its history and switch WAL
    (`pgbackrest check` waits until archived), then take a fresh backup, so that restores after
    this point need not replay across the switch."""
    primary = members(stack, shard)[0]
    # A checkpoint first: until one, pg_control still names the old timeline and pgBackRest
    # refuses to back up ("WAL timeline does not match pg_control timeline").
    log.timed(f"archive {primary.cluster.name}'s new timeline", lambda: run_step(
        primary.host, stack.ssh, "pgbackrest check",
        f"{commands.psql(primary.cluster, 'CHECKPOINT;')} && {pgbackrest.check(primary.cluster)}"), progress)
    log.timed(f"fresh backup of shard {shard}", lambda: run_step(
        primary.host, stack.ssh, "pgbackrest backup", pgbackrest.backup(primary.cluster, "diff")), progress)


def _best_effort(log: StepLog, then: str, action: Callable[[], object]) -> None:
    """Backup steps of a failover: a failure is a warning (the shard takes writes again), not a
    failed failover."""
    try:
        action()
    except StepFailed as exc:
        log.warnings.append(f"{exc}; {then}")


def most_advanced(stack: Stack, candidates: list[Member], log: StepLog) -> Member:
    """The replica that received the most WAL. Commits wait for `ANY 1` standby, so with several
    replicas only the most advanced one surely holds every acknowledged write. One candidate
    needs no asking; one that cannot answer is skipped with a warning."""
    if len(candidates) == 1:
        return candidates[0]
    received: dict[Member, int] = {}
    for member in candidates:
        try:
            received[member] = int(run_step(member.host, stack.ssh, f"WAL received by {member.cluster.name}",
                                            commands.received_wal(member.cluster)).strip())
        except (StepFailed, ValueError) as exc:
            log.warnings.append(f"{member.cluster.name} not considered: {exc}")
    if not received:
        raise FailoverError(f"no replica answered how much WAL it has: {'; '.join(log.warnings)}")
    return max(received, key=received.__getitem__)


def fence(stack: Stack, member: Member, log: StepLog) -> None:
    """Make sure a primary takes no more writes and cannot come back as a second primary: through
    the provider where it can (its machine powered off whatever its network does; at its next
    start the clusters' start guard keeps it fenced), else over SSH (`fence_cluster`). A provider
    error stops the command (StepFailed): nothing after it runs."""
    try:
        powered_off = stack.target.power_off(stack.name, member.host.name)
    except Exception as exc:  # noqa: BLE001 — any provider error: nothing is promoted
        raise StepFailed(f"{member.host.name}: power off through the provider: {exc}; nothing was promoted") from exc
    if powered_off is not None:
        log.notes.append(powered_off)
        stack.forget_inventory()  # the steps after it work with the hosts that run
    else:
        fence_cluster(stack, member, log)


def fence_cluster(stack: Stack, member: Member, log: StepLog) -> None:
    """Stop `member`'s cluster and move its data dir aside over SSH; an unreachable host is a
    warning (it is rebuilt when it returns: its data dir has no standby.signal, or it is out of
    service)."""
    try:
        run_step(member.host, stack.ssh, f"fence {member.cluster.name}", commands.fence(member.cluster))
    except StepFailed as exc:
        if "cannot reach" not in str(exc):
            raise
        log.warnings.append(f"could not fence {member.cluster.name} ({exc}); it is rebuilt when its host returns")


def not_running_members(stack: Stack, shard: int) -> list[str]:
    """The nodes of shard `shard`'s members with no running host (powered off, or gone)."""
    running = {n.name for h in stack.hosts for n in h.nodes}
    return [n.name for n in nodes(stack.config)
            if n.role == "postgres" and n.attrs["shard"] == shard and n.name not in running]


def power_on_members(stack: Stack, shard: int, log: StepLog) -> None:
    """Start the machines of shard `shard`'s members that are not running (a failover powered the
    old primary's off) and wait until each answers SSH; the stack's hosts are read again after."""
    started = []
    for name in not_running_members(stack, shard):
        if done := stack.target.power_on(stack.name, name):
            log.notes.append(done)
            started.append(name)
    if not started:
        return
    stack.forget_inventory()
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    for host in stack.hosts:
        if host.name not in started:
            continue
        while True:
            try:
                run_step(host, stack.ssh, "answer after boot", "true")
                break
            except StepFailed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)


def repoint_pgbouncer(stack: Stack) -> None:
    """Re-render every pgbouncer's databases from the stored primaries and reload (clients stay)."""
    check_converged(stack.converge(select(stack.hosts, role="pgbouncer"), {"pgbouncer"}), "repointing pgbouncer")


def rebuild_replica(stack: Stack, shard: int, member: str | None = None,
                    progress: Callable[[str], None] = lambda _: None) -> StepLog:
    """Rebuild shard `shard`'s members that wait for it (or the replica named `member`, e.g. one
    whose slot was lost) as replicas of the current primary, then put them back in service. A
    member whose machine a failover powered off is started first (it boots fenced)."""
    log = StepLog()
    log.timed(f"start shard {shard}'s powered-off members", lambda: power_on_members(stack, shard, log), progress)
    found = members(stack, shard)
    primary = found[0]
    store = primaries_store(stack.config, stack.name)
    if member is not None:
        chosen = next((m for m in found[1:] if m.cluster.name == member), None)
        if chosen is None:
            names = ", ".join(m.cluster.name for m in found[1:])
            raise FailoverError(f"--member {member}: not a replica of shard {shard} (replicas: {names})")

        def take_out() -> None:
            store.save(store.load().out_of_service(shard, chosen.cluster.replica))
            check_converged(stack.converge([primary.host], {"postgres"}), "dropping the synchronous standby")
            repoint_pgbouncer(stack)
            fence_cluster(stack, chosen, log)  # a replica takes no writes: its machine stays on for the rebuild

        log.timed(f"take {member} out of service", take_out, progress)
        found = members(stack, shard)
    waiting = [m for m in found[1:] if not m.cluster.in_service]
    if not waiting:
        raise FailoverError(f"shard {shard}: no member waits for a rebuild (primary is {primary.cluster.name})")
    hosts = _unique([primary.host] + [m.host for m in waiting])
    log.timed(f"base backup {', '.join(m.cluster.name for m in waiting)} from {primary.cluster.name}",
              lambda: check_converged(stack.converge(hosts, {"postgres"}), "rebuilding"), progress)
    for member in waiting:
        log.timed(f"wait until {member.cluster.name} streams",
                  lambda m=member: run_step(primary.host, stack.ssh, f"{m.cluster.name} streaming",
                                            commands.wait_streaming(primary.cluster, m.cluster)), progress)

    def back_in_service() -> None:
        primaries = store.load()
        for member in waiting:
            primaries = primaries.rebuilt(shard, member.cluster.replica)
        store.save(primaries)

    log.timed("back in service", back_in_service, progress)
    # The primary now waits for its standby again; the read pool moves back to the replica.
    log.timed("synchronous standby on", lambda: check_converged(stack.converge([primary.host], {"postgres"}),
                                                              "synchronous standby"), progress)
    log.timed("repoint pgbouncer", lambda: repoint_pgbouncer(stack), progress)
    # Every role that renders from the primaries, on every host: monitoring, and the members this
    # command did not touch (another replica of the shard streams from the new primary now).
    log.timed("converge the rest", lambda: check_converged(
        stack.follow("primaries", done=frozenset({"pgbouncer"})), "converging the rest"), progress)
    return log


def _unique(hosts: list[Host]) -> list[Host]:
    seen: list[Host] = []
    for host in hosts:
        if host not in seen:
            seen.append(host)
    return seen


def rebuild_steps(stack: Stack, shard: int, member: str | None = None) -> list[str]:
    """What `rebuild_replica` would do, read from the stack and its stored primaries (`--dry-run`)."""
    found = members(stack, shard)
    primary, replicas = found[0], found[1:]
    stopped = not_running_members(stack, shard)
    steps = [f"start {name}'s machine if it is powered off (it boots fenced)" for name in stopped]
    if member is not None:
        if member not in {m.cluster.name for m in replicas}:
            names = ", ".join(m.cluster.name for m in replicas)
            raise FailoverError(f"--member {member}: not a replica of shard {shard} (replicas: {names})")
        steps.append(f"take {member} out of service (synchronous standby off, pgbouncer repointed, fenced)")
    waiting = [m.cluster.name for m in replicas if not m.cluster.in_service or m.cluster.name == member]
    waiting += [f"{name}'s cluster" for name in stopped]
    if not waiting:
        raise FailoverError(f"shard {shard}: no member waits for a rebuild (primary is {primary.cluster.name})")
    return [*steps, f"base backup {', '.join(waiting)} from {primary.cluster.name}",
            *(f"wait until {name} streams" for name in waiting), "back in service", "synchronous standby on",
            "repoint pgbouncer", "converge the rest (other members, monitoring)"]
