"""`ops` commands of backups and point-in-time recovery: backup, backups, restore, restore-drill.

Thin: parse, call ops/backups.py, print. A failed step prints one line naming the host and the
step and exits 1; bad input or a refused restore exits 2 with one line.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from ops.day2 import DryRun, Force, Shard, StackName, _changing, _fail, _progress, _stack, _steps, _would, console


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _when(when: datetime | None) -> str:
    if when is None:
        return "-"
    age = (datetime.now(UTC) - when).total_seconds()
    return f"{when:%Y-%m-%d %H:%M:%S}Z ({age / 3600:.1f} h ago)" if age >= 3600 else f"{when:%H:%M:%S}Z ({age:.0f} s ago)"


def backup(
    ctx: typer.Context, shard: Shard, stack: StackName = None,
    kind: Annotated[str, typer.Option("--type", help="full, diff or incr (a first backup is always full).")] = "diff",
    dry_run: DryRun = False,
) -> None:
    """Back shard N up now, from its primary, into the backup repository."""
    from ops import backups as bk
    from ops import failover as fo
    from ops.remote import StepFailed

    try:
        if dry_run:
            _would(bk.backup_steps(_stack(ctx, stack, start=False), shard, kind))
            return
        loaded = _stack(ctx, stack)
        with _changing(loaded, f"backup --shard {shard} --type {kind}"):
            log = bk.backup(loaded, shard, kind, _progress)
    except (fo.FailoverError, bk.RestoreRefused) as exc:
        _fail(str(exc), 2)
    except StepFailed as exc:
        _fail(f"backup of shard {shard} failed: {exc}")
    _steps(log)


def backups(ctx: typer.Context, stack: StackName = None) -> None:
    """Per shard: last full and diff backup, their age and size, how far WAL is archived."""
    from rich.table import Table

    from ops import backups as bk
    from ops.remote import StepFailed

    loaded = _stack(ctx, stack)
    try:
        found = bk.status(loaded)
    except StepFailed as exc:
        _fail(str(exc))
    drills = {s.shard: bk.last_drill(loaded, s.shard) for s in found}
    table = Table("shard", "status", "last full", "last diff", "size (repo)", "WAL archived up to",
                  "archive failures", "last restore drill", title="backups")
    for s in found:
        full, diff = s.last("full"), s.last("diff")
        newest = s.newest
        table.add_row(
            str(s.shard), s.status,
            _when(full.stopped if full else None), _when(diff.stopped if diff else None),
            f"{_size(newest.size)} ({_size(newest.repo_size)})" if newest else "-",
            f"{s.archived_wal or '-'} {_when(s.archived_at)}", str(s.archive_failures), _drill(drills[s.shard]),
        )
    console.print(table)


def _drill(result) -> str:
    if result is None:
        return "-"
    if not result.ok:
        return f"[red]FAILED[/red] {_when(result.finished)}: {result.detail}"
    return f"ok {_when(result.finished)}, restore {result.restore_s:.1f} s"


def restore_drill(
    ctx: typer.Context, stack: StackName = None,
    shard: Annotated[int | None, typer.Option("--shard", metavar="N", min=0, help="Only this physical shard (default: every one).")] = None,
    dry_run: DryRun = False,
) -> None:
    """Run the restore drill now, as scheduled: each shard's latest backup and archived WAL
    restored into a throwaway cluster on its primary's host, checked, removed; result recorded."""
    from ops import backups as bk
    from ops import failover as fo
    from ops.remote import StepFailed

    loaded = _stack(ctx, stack, start=not dry_run)
    shards = [shard] if shard is not None else list(range(loaded.config.postgres.physical_shards))
    if dry_run:
        try:
            _would([step for n in shards for step in bk.drill_steps(loaded, n)])
        except fo.FailoverError as exc:
            _fail(str(exc), 2)
        return
    failed = []
    try:
        with _changing(loaded, "restore-drill" + (f" --shard {shard}" if shard is not None else "")):
            for n in shards:
                try:
                    log, line = bk.drill(loaded, n, _progress)
                except StepFailed as exc:
                    console.print(f"[red]shard {n}: restore drill failed:[/red] {exc}", highlight=False, soft_wrap=True)
                    failed.append(n)
                    continue
                _steps(log)
                console.print(line, highlight=False, soft_wrap=True)
            if failed:
                raise StepFailed(f"restore drill failed on shard {', '.join(map(str, failed))} "
                                 "(runbooks/restore_drill_failed.md)")
    except fo.FailoverError as exc:
        _fail(str(exc), 2)
    except StepFailed as exc:
        _fail(str(exc))


def restore(
    ctx: typer.Context, shard: Shard, stack: StackName = None,
    to: Annotated[str | None, typer.Option("--to", help="ISO time (UTC unless it names a zone) or restore point name.")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Up to the end of the archived WAL.")] = False,
    into: Annotated[str | None, typer.Option("--into", help="Restore into this new side cluster (inspect, copy rows back).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before replacing the shard's data.")] = False,
    force: Force = False, dry_run: DryRun = False,
) -> None:
    """Restore shard N to a time, a restore point or the latest WAL: into a side cluster
    (--into NAME), or in place of its primary (asks first; its replicas are rebuilt; under the
    stack's lock)."""
    from ops import backups as bk
    from ops import failover as fo
    from ops.remote import StepFailed

    ask = (lambda q: typer.confirm(q + "?", default=False)) if sys.stdin.isatty() else None
    try:
        target = bk.parse_target(to, latest)
        if into is not None:
            bk.check_side_name(into)
        if dry_run:
            _would(bk.restore_steps(_stack(ctx, stack, start=False), shard, target, into))
            return
        loaded = _stack(ctx, stack)
        command = f"restore --shard {shard} --to {target.describe()}" + (f" --into {into}" if into else " (in place)")
        # In place, the shard's members and the stored primaries change: no failover or deploy meanwhile.
        with _changing(loaded, command, force if into is None else None):
            log, where = bk.restore(loaded, shard, target, into, yes, ask, _progress)
    except (fo.FailoverError, bk.RestoreRefused) as exc:
        _fail(str(exc), 2)
    except StepFailed as exc:
        _fail(f"restore of shard {shard} stopped: {exc}")
    _steps(log)
    console.print(where, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the backup commands to the `ops` app."""
    app.command("backup")(backup)
    app.command("backups")(backups)
    app.command("restore")(restore)
    app.command("restore-drill")(restore_drill)
