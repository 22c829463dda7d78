"""How `ops` prints results: Ansible-style recaps, diffs, status tables, URLs."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.syntax import Syntax

from roles.engine.executor import HostResult


def recap(console: Console, results: list[HostResult], check: bool = False) -> None:
    """Per-host changes and failures, then one recap line per host."""
    verb = "would change" if check else "changed"
    for result in results:
        for change in result.changed:
            console.print(f"[yellow]{verb}[/] {result.host.name}: {change.resource} ({change.summary})", highlight=False)
        for handler in result.handlers_run:
            console.print(f"[cyan]handler[/] {result.host.name}: {handler}", highlight=False)
        for what, why in result.failed:
            console.print(f"[red]failed[/] {result.host.name}: {what}: {why}", highlight=False)
    console.print("[bold]RECAP[/]")
    for result in results:
        colour = "red" if result.failed else "yellow" if result.changed else "green"
        console.print(
            f"[{colour}]{result.host.name:<20}[/] ok={result.ok} changed={len(result.changed)} "
            f"failed={len(result.failed)}  ({result.seconds:.2f}s)",
            highlight=False,
        )


def diffs(console: Console, results: list[HostResult]) -> None:
    """Unified diffs of the files that change (secrets are never shown)."""
    for result in results:
        for change in result.changed:
            if change.diff:
                console.print(f"[bold]{result.host.name}[/]: {change.resource}")
                console.print(Syntax(change.diff, "diff", theme="ansi_dark", background_color="default"))


def urls(console: Console, stack) -> None:
    """Where to look once the one-box is up."""
    box = stack.config.onebox
    console.print(f"photostack is up: http://{box.address}:{box.http_port}/")
    console.print(f"  health:    http://{box.address}:{box.http_port}/health")
    console.print(f"  dashboard: http://{box.address}:{box.http_port}/munin/")


def provisioned(console: Console, result: Any) -> None:
    """What a provisioner's `up` reports: `boot_s` (host → seconds until it answered SSH),
    `failed` (one line per host that did not), `total_s`."""
    for name, seconds in result.boot_s.items():
        console.print(f"[green]{name:<20}[/] up in {seconds:.1f}s", highlight=False)
    for line in result.failed:
        console.print(f"[red]failed[/] {line}", highlight=False)
    console.print(f"{len(result.boot_s)} host(s) up, {len(result.failed)} failed, in {result.total_s:.1f}s",
                  highlight=False)
