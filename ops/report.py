"""How `ops` prints results: Ansible-style recaps, diffs, status tables, URLs."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.syntax import Syntax

from roles.engine.executor import HostResult


def console(stderr: bool = False) -> Console:
    """The console commands print through (stderr when stdout carries JSON)."""
    return Console(stderr=stderr)


def progress(console: Console, check: bool = False):
    """A callback printing one line per host as it finishes (long converges show where they are)."""
    verb = "checked" if check else "converged"

    def report(result: HostResult) -> None:
        colour = "red" if result.failed else "yellow" if result.changed else "green"
        console.print(f"[{colour}]{verb}[/] {result.host.name}: changed={len(result.changed)} "
                      f"failed={len(result.failed)} ({result.seconds:.2f}s)", highlight=False)

    return report


def json_results(results: list[HostResult]) -> None:
    """Per-host converge results as one JSON document on stdout (`converge --check --json`)."""
    import json

    print(json.dumps([
        {"host": r.host.name, "ok": r.ok, "failed": [{"what": w, "why": y} for w, y in r.failed],
         "changed": [{"resource": str(c.resource), "summary": c.summary} for c in r.changed],
         "handlers": r.handlers_run, "seconds": round(r.seconds, 3)}
        for r in results
    ], indent=2))


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


def dashboard_urls(config) -> list[tuple[str, str]]:
    """(what, URL) of the dashboards: on the one-box straight from nginx; on AWS through the load
    balancer, which asks for the operator login (OIDC) first."""
    from monitoring.alerts.alert_pipeline import dashboard_base_url  # pages link the same place

    base = dashboard_base_url(config)
    return [("dashboard", f"{base}/munin/"), ("wallboard", f"{base}/wallboard/")]


def urls(console: Console, stack) -> None:
    """Where to look once the one-box is up."""
    site = stack.target.dashboard_base_url()  # nginx serves the site and the dashboards
    console.print(f"photostack is up: {site}/")
    console.print(f"  health:    {site}/health")
    for what, url in dashboard_urls(stack.config):
        console.print(f"  {what + ':':<10} {url}", highlight=False)


def provisioned(console: Console, result: Any) -> None:
    """What a provisioner's `up` reports: `boot_s` (host → seconds until it answered SSH),
    `failed` (one line per host that did not), `total_s`, and optionally `urls` (what → URL)."""
    for name, seconds in result.boot_s.items():
        console.print(f"[green]{name:<20}[/] up in {seconds:.1f}s", highlight=False)
    for line in result.failed:
        console.print(f"[red]failed[/] {line}", highlight=False)
    console.print(f"{len(result.boot_s)} host(s) up, {len(result.failed)} failed, in {result.total_s:.1f}s",
                  highlight=False)
    for what, url in getattr(result, "urls", {}).items():
        console.print(f"{what}: {url}", highlight=False)
