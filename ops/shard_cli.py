"""`ops shard …`: add and remove physical shards, move and rebalance logical shards (ops/reshard.py).

Thin: parse, call ops/reshard.py, print. Bad input or nothing to do exits 2 with one line; a
failed step exits 1 naming the host and the step (the move record says where to resume).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from ops.day2 import console  # rich, created on first use

if TYPE_CHECKING:
    from types import ModuleType

    from rich.table import Table

    from infra.sharding import ShardMap
    from ops.stack import Stack
shard_app = typer.Typer(help="Grow the database tier: physical shards and logical shard moves.", no_args_is_help=True)


def _reshard() -> ModuleType:
    """ops/reshard.py, imported when a shard command runs (`ops --help` stays light)."""
    from ops import reshard

    return reshard


def _stack(ctx: typer.Context) -> Stack:
    from ops.stack import Stack

    return Stack.for_command((ctx.obj or {}).get("stack", "onebox"))


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _progress(step: str) -> None:
    console.print(f"→ {step}", highlight=False)


def _guarded(action, stack: Stack | None = None, command: str = "", locked: bool = False):
    """`action()`, its errors one line each; with `stack` and `command`, a change recorded in the
    audit trail with its outcome, under the stack's lock if `locked` (the moves take it themselves)."""
    from contextlib import nullcontext

    from ops.day2 import _changing
    from ops.lock import LockHeld
    from ops.remote import StepFailed

    try:
        with _changing(stack, f"shard {command}", False if locked else None) if stack is not None else nullcontext():
            return action()
    except (_reshard().ReshardError, LockHeld) as exc:
        _fail(str(exc), 2)
    except StepFailed as exc:
        _fail(f"{exc} (the move record keeps the step: `ops shard move --resume` or `--rollback`)", 1)


def map_table(shard_map: ShardMap, moves: dict | None) -> Table:
    """Logical ranges per physical shard, and the moves in progress."""
    from rich.table import Table

    from infra.sharding import ranges

    table = Table("physical shard", "logical shards", "count",
                  title=f"shard map v{shard_map.version} ({shard_map.logical_shards} logical)")
    for physical in range(shard_map.physical_shards):
        held = shard_map.logical_on(physical)
        table.add_row(f"shard{physical}", ranges(held) or "-", str(len(held)))
    if moves:
        for i, (logical, source, target) in enumerate(moves["moves"]):
            step = moves["step"] if i == 0 else "waiting"
            table.add_row(f"moving ({step})", f"{logical}: shard{source} → shard{target}", "")
    return table


def _moved(results: list) -> None:
    for r in results:
        console.print(f"logical shard {r.logical}: shard{r.source} → shard{r.target}, copied "
                      f"{r.copied_bytes / 1e6:.1f} MB in {r.copy_s:.1f} s, writes paused {r.pause_s:.2f} s",
                      highlight=False)


DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the steps; change nothing.")]


def _would(steps) -> None:
    """Print the steps `steps()` returns (read from the stored state only); a refusal: one line, exit 2."""
    from ops.day2 import _would as would

    would(_guarded(steps))


@shard_app.command("add")
def add(ctx: typer.Context, dry_run: DryRun = False) -> None:
    """Add the physical shard the config states (photostack:postgres.physicalShards, one more than stored)."""
    stack = _stack(ctx)
    if dry_run:
        _would(lambda: _reshard().add_steps(stack))
        return
    shard_map = _guarded(lambda: _reshard().add_shard(stack, _progress), stack, "add", locked=True)
    console.print(map_table(shard_map, _reshard().pending(stack)))
    console.print("next: `ops shard rebalance --dry-run` plans the moves onto it", highlight=False)


@shard_app.command("remove")
def remove(ctx: typer.Context, dry_run: DryRun = False) -> None:
    """Remove the last physical shard (the config states one fewer); it must hold no logical shard."""
    stack = _stack(ctx)
    if dry_run:
        _would(lambda: _reshard().remove_steps(stack))
        return
    shard_map = _guarded(lambda: _reshard().remove_shard(stack, _progress), stack, "remove", locked=True)
    console.print(map_table(shard_map, _reshard().pending(stack)))


def _logical_list(text: str) -> list[int]:
    """`3,5,8-11` → [3, 5, 8, 9, 10, 11]; one line naming the bad part otherwise."""
    result: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        try:
            result += list(range(int(low), int(high or low) + 1))
        except ValueError:
            _fail(f"--logical: '{part}' is not a logical shard number or range (e.g. 3,5,8-11)", 2)
    return result


@shard_app.command("move")
def move_cmd(
    ctx: typer.Context,
    logical: Annotated[str, typer.Option("--logical", help="Logical shards: 3,5,8-11.")] = "",
    to: Annotated[int, typer.Option("--to", help="Target physical shard.")] = -1,
    resume: Annotated[bool, typer.Option("--resume", help="Carry on with the recorded moves.")] = False,
    rollback: Annotated[bool, typer.Option("--rollback", help="Undo the move under way.")] = False,
    dry_run: DryRun = False,
) -> None:
    """Move logical shards online to physical shard --to (or --resume / --rollback a recorded move)."""
    stack = _stack(ctx)
    if resume and rollback:
        _fail("--resume and --rollback: choose one", 2)
    if not (resume or rollback) and (not logical or to < 0):
        _fail("ops shard move: give --logical and --to (or --resume / --rollback)", 2)
    if dry_run:
        reshard = _reshard()
        _would(lambda: reshard.rollback_steps(stack) if rollback else reshard.resume_steps(stack) if resume else
               reshard.move_steps(stack, reshard.plan_moves(reshard.stored_map(stack), _logical_list(logical), to)))
        return
    if rollback:
        console.print(_guarded(lambda: _reshard().rollback(stack, _progress), stack, "move --rollback"), highlight=False)
        return
    if resume:
        _moved(_guarded(lambda: _reshard().resume(stack, _progress), stack, "move --resume"))
        return
    moves = _guarded(lambda: _reshard().plan_moves(_reshard().stored_map(stack), _logical_list(logical), to))
    _moved(_guarded(lambda: _reshard().move(stack, moves, _progress), stack, f"move --logical {logical} --to {to}"))
    console.print(map_table(_reshard().stored_map(stack), None))


@shard_app.command("rebalance")
def rebalance(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the moves, change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Make the moves.")] = False,
) -> None:
    """Even out logical shards over the physical shards (fewest moves, each ±1 of the others)."""
    if dry_run == yes:
        _fail("ops shard rebalance: give exactly one of --dry-run and --yes", 2)
    stack = _stack(ctx)
    from infra.sharding import ranges

    moves = _reshard().rebalance_plan(_reshard().stored_map(stack))
    if not moves:
        console.print("balanced: nothing to move", highlight=False)
        return
    for target in sorted({m[2] for m in moves}):
        picked = [m for m in moves if m[2] == target]
        sources = sorted({m[1] for m in picked})
        console.print(f"move {ranges([m[0] for m in picked])} ({len(picked)}) from shard{'/'.join(map(str, sources))} "
                      f"to shard{target}", highlight=False)
    if yes:
        _moved(_guarded(lambda: _reshard().move(stack, moves, _progress), stack, "rebalance --yes"))
        console.print(map_table(_reshard().stored_map(stack), None))


def register(app: typer.Typer) -> None:
    """Add `ops shard …` to the ops CLI."""
    app.add_typer(shard_app, name="shard")
