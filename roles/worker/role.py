"""worker: Celery workers on the app's queues, one per worker node.
Release (shared with the app role: venv → code → env → current) → processes."""

from __future__ import annotations

from roles.app import runtime
from roles.context import RoleContext
from roles.engine.resources import DesiredState


def desired(ctx: RoleContext) -> DesiredState:
    processes = runtime.worker_processes(ctx)
    return DesiredState(
        resources=[
            # release: the same resources as the app role (a host running both gets them once)
            *runtime.release_resources(ctx),
            # processes
            *[file for process in processes for file in process.files],
            *[process.service for process in processes],
        ],
        handlers=[runtime.restart_handler(ctx)],
    )
