"""Shared pieces of the fault drills: the one-box's addresses, a PagerDuty endpoint for its
health watcher, killing a process tree, and bounded waits."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from monitoring.alerts.alert_pipeline import OVERRIDE_FILE
from ops.maintenance import restart_script
from ops.remote import run_step
from ops.stack import Stack
from roles.engine.resources import Service

WATCHER = "photostack-health-watcher"


def nginx_port(stack: Stack) -> int:
    return stack.config.onebox.http_port


def wait_for(predicate: Callable[[], object], seconds: float, interval: float = 0.2) -> object:
    """The predicate's first truthy value within `seconds`, else AssertionError."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {seconds}s: {getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)


def service(stack: Stack, name: str) -> Service:
    """A service of the one-box by name (e.g. `photostack-health-watcher`)."""
    host = stack.hosts[0]
    return next(s for s in stack.services(host).resources if s.name == name)


def restart(stack: Stack, name: str) -> None:
    run_step(stack.hosts[0], stack.ssh, f"restart {name}", restart_script([service(stack, name)]))


@contextmanager
def watcher_paging_to(stack: Stack, url: str, ca_bundle: str, routing_key: str) -> Iterator[None]:
    """The one-box health watcher pages `url` for the block (a stored endpoint override it reads
    at start); afterwards the override is removed and the watcher restarted on the stack's own
    settings."""
    path = stack.state / OVERRIDE_FILE
    path.write_text(json.dumps({"url": url, "ca": ca_bundle, "routing_key": routing_key}))
    try:
        restart(stack, WATCHER)
        yield
    finally:
        path.unlink(missing_ok=True)
        restart(stack, WATCHER)


def kill_tree(pidfile: str) -> list[int]:
    """SIGKILL the process in `pidfile` and its children (a crash: no graceful shutdown)."""
    with open(pidfile) as handle:
        master = int(handle.read().split()[0])
    children = [int(p) for p in open(f"/proc/{master}/task/{master}/children").read().split()]
    for pid in [master, *children]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return [master, *children]
