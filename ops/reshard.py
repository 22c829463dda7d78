"""Online resharding: add or remove a physical shard, move logical shards between physical ones.

    add:    the config states one more physical shard → the stored map grows (the new shard
            holds nothing) → converge its clusters, pgbouncer databases and monitoring
    move:   per logical shard, under the deploy lock, recorded in the `moves` record:
            copy      dump the schema's DDL onto the target, publish the schema on the source,
                      subscribe on the target (initial copy, then every change streams)
            cut-over  freeze the schema's writes on the source (REVOKE: the app answers 503 +
                      Retry-After for that logical shard only) → wait until every table's rows
                      and checksum are equal on both sides → the target's id sequence continues
                      past the source's → flip the stored map (its version rises) → write it to
                      every host (the app re-reads the file on its next request)
            clean     drop the subscription, the publication and the old copy
    remove: the last physical shard, once empty: its clusters go, then the map shrinks

Why logical replication (PostgreSQL 15 `FOR TABLES IN SCHEMA`) rather than Instagram's split
streaming replica: a move then copies one schema (a few % of a shard), not the whole shard;
the target can be an existing physical shard with its own data (a rebalance, a move back); and
the source keeps its replica and failover untouched. The price: wal_level=logical on every
cluster, and a slot on the source for the move's duration.

The stored map is the commit point: before the flip the source owns the logical shard and a
rollback just drops the copy (and gives the writes back); after it the target owns it and a
move can only be finished (cleaned), or moved back by another move. An interrupted cut-over
gives the writes back before it stops, so only `ops shard move --resume` or `--rollback` is
needed, never a hand-edited grant. A failover of the source during a copy loses the slot
(logical slots do not follow a failover in PostgreSQL 15): roll back and move again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from infra.records import readers, record
from infra.sharding import ShardMap, ranges, schema_name
from infra.inventory import Host
from infra.shardstore import HOST_SHARDMAP_PATH, shard_map_store
from ops import lock
from ops import reshard_sql as sql
from ops.failover import Member, members
from ops.remote import StepFailed, StepLog, check_converged, run_step
from ops.rollout import LOCK_FILE
from ops.stack import Stack
from roles.engine.executor import converge_hosts
from roles.engine.resources import DesiredState
from roles.postgres import commands
from roles.postgres.cluster import shard_map_file

MOVES = "moves"  # the record of the moves in progress (infra/records.py)
# Roles whose state depends on which physical shards exist: those that render the shards' map or
# their clusters' roles (munin_master too: munin.conf lists each cluster's plugins and limits).
SHARD_ROLES = readers("shardmap", "primaries")
# Roles whose hosts hold the shard map file (the app and workers read it through pgbouncer's copy).
MAP_ROLES = {"postgres", "pgbouncer", "app", "worker"}
COPY_TIMEOUT_S = 3600.0
CATCH_UP_TIMEOUT_S = 30.0
# After the flip, reads that started before it may still read the old copy: it goes after this.
GRACE_S = 1.0


class ReshardError(RuntimeError):
    """A resharding step cannot start (bad input, nothing to do, a move already in progress)."""


Progress = Callable[[str], None]


@dataclass(kw_only=True)
class MoveResult(StepLog):
    """One logical shard's move: how long its writes paused and how much it copied."""

    logical: int
    source: int
    target: int
    pause_s: float = 0.0
    copy_s: float = 0.0
    copied_bytes: int = 0


# --- physical shards ---------------------------------------------------------------------------

def stored_map(stack: Stack) -> ShardMap:
    """The stored map as it is; the initial one from the config while none is stored (the first
    converge stores it), so that reading it changes nothing."""
    found = shard_map_store(stack.config, stack.name).load()
    return found if found is not None else ShardMap.initial(stack.config)


def _added(stack: Stack) -> tuple[ShardMap, int]:
    """The stored map and the physical shard count the config states, one more or the same
    (an interrupted add); ReshardError otherwise."""
    current, wanted = stored_map(stack), stack.config.postgres.physical_shards
    if wanted not in (current.physical_shards, current.physical_shards + 1):
        raise ReshardError(f"photostack:postgres.physicalShards: the config says {wanted}, the stored map has "
                           f"{current.physical_shards}; add physical shards one at a time")
    return current, wanted


def _hosts_of(stack: Stack, roles: set[str]) -> str:
    return ", ".join(h.name for h in stack.hosts if roles & set(h.roles))


def add_steps(stack: Stack) -> list[str]:
    """What `add_shard` would do, read from the config and the stored map (`--dry-run`)."""
    current, wanted = _added(stack)
    store = [f"store the map with physical shard {current.physical_shards}"] if wanted > current.physical_shards else []
    return [*store,
            f"converge physical shard {wanted - 1}'s clusters and pgbouncer databases on "
            f"{_hosts_of(stack, {'postgres', 'pgbouncer'})}",
            f"converge the map and monitoring of physical shard {wanted - 1} ({', '.join(sorted(SHARD_ROLES))}) on "
            f"{_hosts_of(stack, SHARD_ROLES)}"]


def add_shard(stack: Stack, progress: Progress = lambda _: None) -> ShardMap:
    """Make the physical shard the config adds real: the stored map grows (the new shard holds
    no logical shard), then its clusters and pgbouncer databases converge while the hosts keep
    the old map file (an app process asking for the shard before pgbouncer knew it would get
    "no such database", and its pool would back off for seconds), then the map file and
    monitoring. Interrupted, `ops shard add` again finishes it. On the one-box the clusters'
    memory settings are shared out again, which restarts every cluster once."""
    store = shard_map_store(stack.config, stack.name)
    current, wanted = _added(stack)
    if wanted == current.physical_shards + 1:
        progress(f"store the map with physical shard {current.physical_shards}")
        store.save(current.grown())
    progress(f"converge physical shard {wanted - 1}'s clusters and pgbouncer databases")

    def without_map_file(host: Host) -> DesiredState:
        state = stack.desired(host, {"postgres", "pgbouncer"})
        return DesiredState([r for r in state.resources if getattr(r, "path", None) != HOST_SHARDMAP_PATH],
                            state.handlers)

    check_converged(converge_hosts(stack.hosts, without_map_file, stack.ssh), f"adding physical shard {wanted - 1}")
    progress(f"converge the map and monitoring of physical shard {wanted - 1}")
    check_converged(stack.converge(stack.hosts, SHARD_ROLES), f"adding physical shard {wanted - 1}")
    return store.load()


def _removal(stack: Stack) -> tuple[ShardMap | None, list[Member]]:
    """The smaller map and the clusters to drop (replicas first: the primary holds their slots)
    when the config states one physical shard fewer than the stored map; (None, []) when they
    agree (an interrupted removal: only the converge is left); ReshardError otherwise."""
    current, wanted = stored_map(stack), stack.config.postgres.physical_shards
    if wanted == current.physical_shards:
        return None, []
    if wanted != current.physical_shards - 1:
        raise ReshardError(f"photostack:postgres.physicalShards: the config says {wanted}, the stored map has "
                           f"{current.physical_shards}; remove physical shards one at a time")
    try:
        smaller = current.shrunk()
    except ValueError as exc:
        raise ReshardError(str(exc)) from None
    _check_no_move(stack)
    # The clusters of the shard being removed exist only in a topology that still has it.
    old = Stack(stack.name, stack.config.model_copy(update={"postgres": stack.config.postgres.model_copy(
        update={"physical_shards": current.physical_shards})}))
    old.local = stack.local
    return smaller, list(reversed(members(old, current.physical_shards - 1)))


def remove_steps(stack: Stack) -> list[str]:
    """What `remove_shard` would do, read from the config and the stored map (`--dry-run`)."""
    smaller, doomed = _removal(stack)
    shrink = [f"store the map without physical shard {smaller.physical_shards} and write it to "
              f"{_hosts_of(stack, MAP_ROLES)}"] if smaller is not None else []
    return [*shrink, *(f"drop cluster {m.cluster.name} on {m.host.name}" for m in doomed),
            f"converge pgbouncer and monitoring ({', '.join(sorted(SHARD_ROLES))}) on {_hosts_of(stack, SHARD_ROLES)}"]


def remove_shard(stack: Stack, progress: Progress = lambda _: None) -> ShardMap:
    """Remove the last physical shard once no logical shard is left on it (the config states one
    fewer): the map shrinks and reaches every host first (no app process asks for the shard any
    more), then its clusters stop and are dropped, then pgbouncer and monitoring forget it.
    Interrupted after the map shrank, the clusters left are dropped by hand (`pg_dropcluster
    --stop`) before `ops shard remove` converges the rest."""
    store = shard_map_store(stack.config, stack.name)
    smaller, doomed = _removal(stack)
    if smaller is not None:
        progress(f"store the map without physical shard {smaller.physical_shards} and write it to every host")
        store.save(smaller)
        publish_map(stack)
    for member in doomed:
        progress(f"drop cluster {member.cluster.name}")
        run_step(member.host, stack.ssh, f"drop {member.cluster.name}",
                 f"pg_dropcluster --stop {member.cluster.version} {member.cluster.name} || "
                 f"[ ! -d {member.cluster.config_dir} ]")
    progress("converge pgbouncer and monitoring")
    check_converged(stack.converge(stack.hosts, SHARD_ROLES), "removing a physical shard")
    return store.load()


# --- moves ------------------------------------------------------------------------------------

def pending(stack: Stack) -> dict | None:
    """The moves record: {"moves": [[logical, source, target], …], "step": "copy"|"flipped"};
    the first move is the one under way. None when no move is in progress."""
    return record(stack.config, stack.name, MOVES).load() or None


def _check_no_move(stack: Stack) -> None:
    if found := pending(stack):
        first = found["moves"][0]
        raise ReshardError(f"a move is in progress (logical shard {first[0]} → physical {first[2]}, step "
                           f"{found['step']}); finish it with `ops shard move --resume` or `--rollback`")


def plan_moves(shard_map: ShardMap, logical: list[int], target: int) -> list[tuple[int, int, int]]:
    """(logical, source, target) for each named logical shard, checked against the map."""
    if not 0 <= target < shard_map.physical_shards:
        raise ReshardError(f"--to {target}: no such physical shard (0..{shard_map.physical_shards - 1})")
    moves = []
    for n in logical:
        if not 0 <= n < shard_map.logical_shards:
            raise ReshardError(f"--logical {n}: no such logical shard (0..{shard_map.logical_shards - 1})")
        if shard_map.physical_of(n) == target:
            raise ReshardError(f"--logical {n}: already on physical shard {target}")
        moves.append((n, shard_map.physical_of(n), target))
    if len({m[0] for m in moves}) != len(moves):
        raise ReshardError("--logical names a logical shard twice")
    return moves


def _move_steps(stack: Stack, moves: list[tuple[int, int, int]], step: str = "copy") -> list[str]:
    """The steps of `moves`, the first from `step` on (the moves record's)."""
    steps = []
    for i, (logical, source, target) in enumerate(moves):
        src, dst = _primary(stack, source).cluster.name, _primary(stack, target).cluster.name
        if i or step == "copy":
            steps += [f"copy logical shard {logical} to {dst} (logical replication from {src})",
                      f"freeze logical shard {logical}'s writes on {src}, wait until {dst} has every change, "
                      f"advance its id sequence",
                      f"flip the map: logical shard {logical} → physical shard {target}; write it to "
                      f"{_hosts_of(stack, MAP_ROLES)}"]
        steps.append(f"drop logical shard {logical}'s old copy on {src}")
    return steps


def move_steps(stack: Stack, moves: list[tuple[int, int, int]]) -> list[str]:
    """What `move` would do (`--dry-run`): read from the stored map and the moves record."""
    stack.check_shard_map()
    _check_no_move(stack)
    return [f"take the stack's lock and record the moves of logical shards {ranges([m[0] for m in moves])}",
            *_move_steps(stack, moves)]


def resume_steps(stack: Stack) -> list[str]:
    """What `resume` would do (`--dry-run`), from the step each recorded move reached."""
    stack.check_shard_map()
    if (found := pending(stack)) is None:
        raise ReshardError("no move is in progress")
    return ["take the stack's lock", *_move_steps(stack, [tuple(m) for m in found["moves"]], found["step"])]


def rollback_steps(stack: Stack) -> list[str]:
    """What `rollback` would do (`--dry-run`)."""
    stack.check_shard_map()
    if (found := pending(stack)) is None:
        raise ReshardError("no move is in progress")
    (logical, source, target), skipped = found["moves"][0], found["moves"][1:]
    src, dst = _primary(stack, source).cluster.name, _primary(stack, target).cluster.name
    if stored_map(stack).physical_of(logical) == target:
        steps = [f"logical shard {logical} is already on physical shard {target}: drop its old copy on {src}"]
    else:
        steps = [f"give logical shard {logical}'s writes back on {src}", f"drop the copy on {dst}"]
    forget = [f"forget the moves not started: {ranges([m[0] for m in skipped])}"] if skipped else []
    return ["take the stack's lock", *steps, *forget, "clear the moves record"]


def move(stack: Stack, moves: list[tuple[int, int, int]], progress: Progress = lambda _: None) -> list[MoveResult]:
    """Move logical shards one after the other (see the module docstring), under the deploy lock."""
    stack.check_shard_map()
    if not moves:
        return []
    with lock.held(lock.stack_lock(stack, LOCK_FILE), f"move logical shards {ranges([m[0] for m in moves])}"):
        _check_no_move(stack)
        store = record(stack.config, stack.name, MOVES)
        store.save({"moves": [list(m) for m in moves], "step": "copy"})
        return _run(stack, progress)


def resume(stack: Stack, progress: Progress = lambda _: None) -> list[MoveResult]:
    """Carry on with the recorded moves from the step each one reached."""
    stack.check_shard_map()
    with lock.held(lock.stack_lock(stack, LOCK_FILE), "resume logical shard moves"):
        if pending(stack) is None:
            raise ReshardError("no move is in progress")
        return _run(stack, progress)


def rollback(stack: Stack, progress: Progress = lambda _: None) -> str:
    """Undo the move under way if its map was not flipped yet (drop the copy, give the writes
    back), finish its clean-up if it was; forget the moves not yet started."""
    stack.check_shard_map()
    with lock.held(lock.stack_lock(stack, LOCK_FILE), "roll back logical shard moves"):
        found = pending(stack)
        if found is None:
            raise ReshardError("no move is in progress")
        logical, source, target = found["moves"][0]
        src, dst = _primary(stack, source), _primary(stack, target)
        if stored_map(stack).physical_of(logical) == target:
            progress(f"logical shard {logical} is already on physical shard {target}: finish its clean-up")
            _clean(stack, logical, src, dst)
            outcome = (f"logical shard {logical} had already moved to physical shard {target} (kept; move it "
                       f"back with `ops shard move --logical {logical} --to {source}`)")
        else:
            progress(f"give logical shard {logical}'s writes back on {src.cluster.name}")
            _sql(stack, src, "thaw", sql.thaw_sql(logical))
            _abandon_copy(stack, logical, src, dst, progress)
            outcome = f"logical shard {logical} stays on physical shard {source}; its copy on {target} is gone"
        record(stack.config, stack.name, MOVES).save(None)
        skipped = found["moves"][1:]
        return outcome + (f"; not started: {ranges([m[0] for m in skipped])}" if skipped else "")


def _run(stack: Stack, progress: Progress) -> list[MoveResult]:
    store = record(stack.config, stack.name, MOVES)
    results = []
    while found := pending(stack):
        logical, source, target = found["moves"][0]
        result = MoveResult(logical=logical, source=source, target=target)
        src, dst = _primary(stack, source), _primary(stack, target)
        if found["step"] == "copy":
            result.timed(f"copy logical shard {logical} to {dst.cluster.name}",
                         lambda: _copy(stack, logical, src, dst, result), progress)
            _cut_over(stack, logical, src, dst, result, progress)
            store.save({**found, "step": "flipped"})
        result.timed(f"drop logical shard {logical}'s old copy on {src.cluster.name}",
                     lambda: _clean(stack, logical, src, dst), progress)
        rest = found["moves"][1:]
        store.save({"moves": rest, "step": "copy"} if rest else None)
        results.append(result)
    return results


def _copy(stack: Stack, logical: int, src: Member, dst: Member, result: MoveResult) -> None:
    """The schema on the target, subscribed to the source, its initial copy done. A copy an
    interruption left without its subscription is dropped and made again."""
    if not _true(stack, dst, sql.has_subscription(logical)):
        _sql(stack, dst, "drop a partial copy", sql.drop_copy_sql(logical))
        _sql(stack, src, "drop a stale slot", sql.drop_slot_sql(logical))
        ddl = run_step(src.host, stack.ssh, f"dump logical shard {logical}'s schema", sql.dump_schema(src.cluster, logical))
        _sql(stack, dst, "create the schema", ddl)
        _sql(stack, src, "publish", sql.publish_sql(logical))
        _sql(stack, dst, "subscribe", sql.subscribe_sql(src.cluster, logical))
    started = time.monotonic()
    _wait(lambda: _true(stack, dst, sql.copied(logical)), COPY_TIMEOUT_S,
          lambda: f"logical shard {logical}: the initial copy to {dst.cluster.name} did not finish")
    result.copy_s = time.monotonic() - started
    result.copied_bytes = int(_value(stack, dst, _schema_bytes(logical)) or 0)


def _cut_over(stack: Stack, logical: int, src: Member, dst: Member, result: MoveResult, progress: Progress) -> None:
    """Freeze → caught up → sequence → flip → publish the map. Anything failing or interrupted
    before the flip gives the writes back (the record stays at `copy`, so resume redoes it)."""
    started = time.monotonic()
    flipped = False
    try:
        result.timed(f"freeze logical shard {logical}'s writes", lambda: _sql(stack, src, "freeze", sql.freeze_sql(logical)),
                     progress)
        result.timed("wait until the target has every change", lambda: _caught_up(stack, logical, src, dst), progress)
        last = int(_value(stack, src, sql.last_id_sql(logical)))
        result.timed(f"advance the id sequence past {last}",
                     lambda: _sql(stack, dst, "sequence", sql.advance_sequence_sql(logical, last)), progress)
        store = shard_map_store(stack.config, stack.name)
        result.timed(f"flip the map: logical shard {logical} → physical shard {dst.cluster.shard}",
                     lambda: store.save(store.load().moved(logical, dst.cluster.shard)), progress)
        flipped = True
        result.timed("write the map to every host", lambda: publish_map(stack), progress)
    except BaseException:
        if not flipped:
            _sql(stack, src, "thaw", sql.thaw_sql(logical))
        raise
    result.pause_s = time.monotonic() - started


def _caught_up(stack: Stack, logical: int, src: Member, dst: Member) -> None:
    """Every table's rows and checksum equal on both sides. The frozen source is summed while the
    target is polled (writes are paused meanwhile: the two sums take about as long as one)."""
    names = (_value(stack, src, sql.tables(logical)) or "").split(",")
    with ThreadPoolExecutor(max_workers=1) as pool:
        source = pool.submit(_value, stack, src, sql.checksums(logical, names))
        seen = _value(stack, dst, sql.checksums(logical, names))
        want = source.result()

    def equal() -> bool:
        nonlocal seen
        if seen != want:
            seen = _value(stack, dst, sql.checksums(logical, names))
        return seen == want

    # Writes are paused: poll at the shortest interval.
    _wait(equal, CATCH_UP_TIMEOUT_S, lambda: f"logical shard {logical}: the target still differs from the frozen "
          f"source after {CATCH_UP_TIMEOUT_S:.0f} s (source {want}, target {seen})", longest_s=0.02)


def _clean(stack: Stack, logical: int, src: Member, dst: Member) -> None:
    """After the flip: the subscription, the publication and the source's old copy go."""
    time.sleep(GRACE_S)
    _sql(stack, dst, "unsubscribe", sql.unsubscribe_sql(logical))
    _sql(stack, dst, "revoke the replication login", sql.moved_in_sql(logical))
    _sql(stack, src, "drop the old copy", sql.unpublish_sql(logical, drop_schema=True))


def _abandon_copy(stack: Stack, logical: int, src: Member, dst: Member, progress: Progress) -> None:
    progress(f"drop the copy on {dst.cluster.name}")
    _sql(stack, dst, "unsubscribe", sql.unsubscribe_sql(logical))
    _sql(stack, dst, "drop the copy", sql.drop_copy_sql(logical))
    _sql(stack, src, "unpublish", sql.unpublish_sql(logical, drop_schema=False))
    _sql(stack, src, "drop a stale slot", sql.drop_slot_sql(logical))


def publish_map(stack: Stack) -> None:
    """Write the stored map to every host that reads it (one file, no other change), in parallel."""
    hosts = [h for h in stack.hosts if MAP_ROLES & set(h.roles)]
    check_converged(converge_hosts(hosts, lambda h: DesiredState(resources=[shard_map_file(stack.context(h))]),
                                   stack.ssh), "writing the shard map")


def rebalance_plan(shard_map: ShardMap) -> list[tuple[int, int, int]]:
    """(logical, source, target) moves that even out the physical shards."""
    return [(n, shard_map.physical_of(n), target) for n, target in shard_map.rebalanced()]


# --- helpers -----------------------------------------------------------------------------------

def _primary(stack: Stack, physical: int) -> Member:
    found = members(stack, physical)
    return found[0]


def _sql(stack: Stack, member: Member, what: str, text: str) -> str:
    return run_step(member.host, stack.ssh, f"{what} on {member.cluster.name}",
                    commands.psql(member.cluster, text, member.cluster.database))


def _value(stack: Stack, member: Member, query: str) -> str:
    return run_step(member.host, stack.ssh, f"ask {member.cluster.name}",
                    commands.psql_value(member.cluster, query, member.cluster.database)).strip()


def _true(stack: Stack, member: Member, query: str) -> bool:
    return _value(stack, member, query) == "t"


def _schema_bytes(logical: int) -> str:
    return (f"SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n "
            f"ON n.oid = c.relnamespace WHERE n.nspname = '{schema_name(logical)}' AND c.relkind = 'r'")


def _wait(done: Callable[[], bool], timeout_s: float, failure: Callable[[], str], longest_s: float = 1.0) -> None:
    """Poll `done` (quickly at first, then at most every `longest_s`) until it is true; StepFailed
    with the message `failure()` (said when it gives up) after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while not done():
        if time.monotonic() > deadline:
            raise StepFailed(failure())
        time.sleep(delay)
        delay = min(delay * 2, longest_s)
