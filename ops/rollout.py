"""Zero-downtime rolling deploys of the app and worker fleet, and rollback.

The story, under the deploy lock:

    build the release → ship it to every app/worker host (venv, code; skipped where present)
    for each batch (an app node, then each worker node):
        take it out of the load balancer → switch `current` → restart it → wait until it
        runs the new release and answers /health → put it back
    on a failing batch: roll that batch and every batch done before it back to the release
    they ran, then re-raise as DeployFailed naming the batch and why
    record the release (converge keeps a pinned one), prune old releases, mark it in Sentry

Out of rotation: app servers are reached only through nginx (on AWS the ALB's target group holds
the nginx hosts), so the `drained` record marks the node `down` in every nginx upstream and a
converge of the nginx role reloads nginx gracefully (in-flight requests finish). Workers stop with Celery's warm shutdown (SIGTERM: running tasks
finish; acks_late tasks not yet acknowledged go back to the queue).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from infra.config import REPO_ROOT
from infra.inventory import Host
from infra.records import record
from ops import lock, markers
from ops.maintenance import Placed, node_services, restart_script
from ops.remote import StepFailed, StepLog, check_converged, run_step
from ops.stack import Stack
from roles.app import deploy as steps
from roles.app import release as rel
from roles.app import runtime
from roles.engine.executor import converge_hosts
from roles.engine.resources import DesiredState, File, Service
from roles.nginx.role import DRAINED

Progress = Callable[[str], None]
LOCK_FILE = "deploy.lock"


class DeployFailed(RuntimeError):
    """A batch failed; the message says which, why, and what was rolled back."""


@dataclass(frozen=True)
class Batch(Placed):
    """One node restarted as a unit: out of the load balancer (app nodes), switched, restarted."""

    services: tuple[Service, ...]
    pidfile: str
    health: tuple[str, int] | None  # (address, port) of an app node's /health; None for workers

    @property
    def name(self) -> str:
        return self.node.name


@dataclass
class DeployLog(StepLog):
    """What a deploy did: its timed steps and warnings (what went wrong without failing the
    deploy, e.g. Sentry not told), the version, previous versions per host, notes."""

    version: str = ""
    previous: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        """Wall time since the deploy began (between its steps too)."""
        return time.monotonic() - self.started


class Balancer(Protocol):
    """Takes app nodes out of rotation and puts them back."""

    def drain(self, batch: Batch) -> None: ...

    def restore(self, batch: Batch) -> None: ...


class NginxBalancer:
    """Every target (the app servers sit behind nginx, on one-box and on AWS): the `drained` record lists nodes nginx marks `down`; a
    converge of the nginx role re-renders the upstream and reloads gracefully (in-flight
    requests finish on the old workers)."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.record = record(stack.config, stack.name, DRAINED)
        self.hosts = [h for h in stack.hosts if "nginx" in h.roles]

    def _set(self, node: str, drained: bool) -> None:
        current = set(self.record.load() or [])
        self.record.save(sorted(current | {node} if drained else current - {node}))
        self.reload(f"reload nginx ({'drain' if drained else 'restore'} {node})")

    def reload(self, step: str) -> None:
        """Converge the nginx role of every nginx host: it renders the upstream from the record."""
        check_converged(self.stack.converge(self.hosts, {"nginx"}), step)

    def drain(self, batch: Batch) -> None:
        self._set(batch.name, True)

    def restore(self, batch: Batch) -> None:
        self._set(batch.name, False)


def balancer_for(stack: Stack) -> Balancer:
    """nginx, on every target: the load balancer's target group holds the nginx hosts, never an
    app server (infra/load_balancer.py), so an app node leaves rotation in nginx's upstream."""
    return NginxBalancer(stack)


# --- what to roll ---------------------------------------------------------------------------

def fleet_hosts(stack: Stack) -> list[Host]:
    """Hosts running the app or workers (they hold releases)."""
    return [h for h in stack.hosts if {"app", "worker"} & set(h.roles)]


def batches(stack: Stack) -> list[Batch]:
    """App nodes one at a time (nginx always has the others), then each worker node."""
    found = []
    for role in ("app", "worker"):
        for host in stack.hosts:
            ctx = stack.context(host)
            for node in host.nodes_of(role):
                unit, pidfile = (runtime.app_unit if role == "app" else runtime.worker_unit)(ctx, node)
                health = (ctx.bind_address, ctx.port(node)) if role == "app" else None
                services = tuple(node_services(stack, Placed(node, host)))
                found.append(Batch(node, host, services, pidfile, health))
    return found


# --- the steps --------------------------------------------------------------------------------

def build(version: str | None, repo: Path = REPO_ROOT) -> rel.Release:
    """The release of the working tree, or of git ref `version` (checked out in a throwaway worktree)."""
    if version is None:
        return rel.build_release(repo)
    tmp = Path(tempfile.mkdtemp(prefix="photostack-release-"))
    tree = tmp / "tree"
    added = subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(tree), version],
                           capture_output=True, text=True)
    if added.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DeployFailed(f"--version {version}: not a git revision of {repo} ({added.stderr.strip().splitlines()[-1:]})")
    try:
        return rel.release_of(tree)
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def ship(stack: Stack, hosts: list[Host], release: rel.Release) -> None:
    """Put the release (and its venv) on every host; hosts that have it are untouched."""
    for host in hosts:
        run_step(host, stack.ssh, f"ship {release.version}", steps.ship_if_missing(release))


def current_versions(stack: Stack, hosts: list[Host]) -> dict[str, str]:
    """The version each host's `current` points at."""
    return {h.name: run_step(h, stack.ssh, "read current", steps.current_version()).strip() for h in hosts}


def roll(stack: Stack, balancer: Balancer, batch: Batch, version: str, progress: Progress) -> None:
    """Out of rotation → switch → restart → runs `version` and is healthy → back in rotation.
    A failure leaves the node out of rotation (it is not serving right) and raises StepFailed."""
    wait = stack.context(batch.host).defaults("app")["app_start_wait_s"]
    if batch.health:
        progress(f"{batch.name}: out of rotation")
        balancer.drain(batch)
    progress(f"{batch.name}: switch to {version} and restart")
    run_step(batch.host, stack.ssh, f"{batch.name}: switch to {version}", rel.switch_script(version))
    run_step(batch.host, stack.ssh, f"{batch.name}: restart", restart_script(list(batch.services)))
    ready = steps.runs_release(batch.pidfile, version)
    if batch.health:
        ready += f" && {steps.listens(batch.pidfile, batch.health[1])} && {steps.healthy(*batch.health)}"
    run_step(batch.host, stack.ssh, f"{batch.name}: wait until it runs {version}", steps.wait_until(ready, wait))
    if batch.health:
        progress(f"{batch.name}: back in rotation")
        balancer.restore(batch)


def roll_out(stack: Stack, balancer: Balancer, version: str, previous: dict[str, str], log: DeployLog,
             progress: Progress) -> None:
    """Roll every batch to `version`; on a failure roll the failed and the finished batches
    back to what their host ran before, then raise DeployFailed."""
    done: list[Batch] = []
    for batch in batches(stack):
        try:
            with log.step(f"{batch.name} → {version}", progress):
                roll(stack, balancer, batch, version, progress)
        except StepFailed as exc:
            undone = _roll_back([batch, *reversed(done)], stack, balancer, previous, progress)
            raise DeployFailed(f"deploy of {version} stopped at {batch.name}: {exc}; {undone}") from exc
        done.append(batch)


def _roll_back(rolled: list[Batch], stack: Stack, balancer: Balancer, previous: dict[str, str],
               progress: Progress) -> str:
    """Return batches to their host's previous release; says what happened."""
    back, stuck = [], []
    for batch in rolled:
        before = previous.get(batch.host.name)
        if not before:
            stuck.append(f"{batch.name} (no previous release)")
            continue
        try:
            roll(stack, balancer, batch, before, progress)
            back.append(batch.name)
        except StepFailed as exc:
            stuck.append(f"{batch.name} ({exc})")
    said = f"rolled back {', '.join(back)} to {', '.join(sorted(set(previous.values())))}" if back else "nothing rolled back"
    return said + (f"; NOT rolled back, out of rotation: {'; '.join(stuck)}" if stuck else "")


def finish(stack: Stack, version: str, previous: str, pinned: bool) -> str | None:
    """Record the release (a pinned one is what converge keeps), prune, mark it in Sentry;
    returns a warning when Sentry could not be told."""
    record(stack.config, stack.name, runtime.RELEASE_RECORD).save(
        {"version": version, "previous": previous, "pinned": pinned})
    keep = stack.context(stack.hosts[0]).defaults("app")["app_releases_keep"]
    for host in fleet_hosts(stack):
        run_step(host, stack.ssh, "prune releases", rel.prune_script(keep))
    return mark_in_sentry(stack, version)


def mark_in_sentry(stack: Stack, version: str) -> str | None:
    """Tell Sentry `version` is deployed (a release and deploy with `sentryAuthToken`, else an event);
    a warning line instead of an error: the deploy has happened whatever Sentry says."""
    from monitoring.integrations.sentry import mark_deploy_for_stack

    try:
        return mark_deploy_for_stack(stack.config, version, stack.optional_secret)
    except Exception as exc:  # noqa: BLE001 — e.g. SSM unreadable: still not a failed deploy
        return f"Sentry: deploy of {version} not marked: {type(exc).__name__}: {exc}"


def write_env(stack: Stack, hosts: list[Host]) -> None:
    """Re-render app.env on the fleet hosts without the restart it would notify: the nodes then
    restart one at a time, out of rotation (a plain converge restarts a host's processes at once)."""
    def env_only(host: Host) -> DesiredState:
        files = [r for r in stack.desired(host, {"app", "worker"}).resources
                 if isinstance(r, File) and r.path == runtime.ENV_FILE]
        return DesiredState(resources=[replace(f, notify=()) for f in files])

    check_converged(converge_hosts(hosts, env_only, stack.ssh), "write app.env")


def restart_fleet(stack: Stack, roles: tuple[str, ...], progress: Progress) -> None:
    """After a change app.env renders from (a rotated secret, a new Redis primary): app.env
    written, then each node of `roles` rolled at the release its host runs now (out of rotation →
    restart → healthy → back in)."""
    hosts = fleet_hosts(stack)
    write_env(stack, hosts)
    versions = current_versions(stack, hosts)
    balancer = balancer_for(stack)
    for batch in batches(stack):
        if batch.node.role in roles:
            roll(stack, balancer, batch, versions[batch.host.name], progress)


# --- the commands -----------------------------------------------------------------------------

def deploy(stack: Stack, version: str | None = None, progress: Progress = lambda _: None,
           balancer: Balancer | None = None, force: bool = False) -> DeployLog:
    """Build, ship and roll out a release (the working tree, or git ref `version`, pinned)."""
    log = DeployLog()
    balancer = balancer or balancer_for(stack)
    with lock.held(lock.stack_lock(stack, LOCK_FILE), f"deploy {version or 'working tree'}", log.notes, force):
        with log.step("build release", progress):
            release = build(version)
        log.version = release.version
        hosts = fleet_hosts(stack)
        with log.step(f"ship {release.version} to {len(hosts)} host(s)", progress):
            log.previous = current_versions(stack, hosts)
            ship(stack, hosts, release)
        roll_out(stack, balancer, release.version, log.previous, log, progress)
        with log.step("record, prune, mark in Sentry", progress):
            before = next((v for v in log.previous.values() if v and v != release.version), "")
            warning = finish(stack, release.version, before or _stored_previous(stack), pinned=version is not None)
        if warning:
            log.warnings.append(warning)
        if warning := markers.mark(stack, "deploy", f"{release.version} (was {before or 'nothing'})"):
            log.warnings.append(warning)
    return log


def rollback(stack: Stack, progress: Progress = lambda _: None, balancer: Balancer | None = None,
             force: bool = False) -> DeployLog:
    """Roll out the release before the deployed one (pinned: converge keeps it until the next deploy)."""
    stored = record(stack.config, stack.name, runtime.RELEASE_RECORD).load() or {}
    target = stored.get("previous")
    if not target:
        raise DeployFailed("no previous release recorded: `ops rollback` needs an earlier `ops deploy`")
    log = DeployLog(version=target)
    balancer = balancer or balancer_for(stack)
    with lock.held(lock.stack_lock(stack, LOCK_FILE), f"rollback to {target}", log.notes, force):
        hosts = fleet_hosts(stack)
        log.previous = current_versions(stack, hosts)
        for host in hosts:
            run_step(host, stack.ssh, f"check {target} is on the host", steps.shipped_version(target))
        roll_out(stack, balancer, target, log.previous, log, progress)
        with log.step("record, mark in Sentry", progress):
            warning = finish(stack, target, stored.get("version", ""), pinned=True)
        if warning:
            log.warnings.append(warning)
        if warning := markers.mark(stack, "rollback", f"{target} (was {stored.get('version') or 'nothing'})"):
            log.warnings.append(warning)
    return log


def _stored_previous(stack: Stack) -> str:
    stored = record(stack.config, stack.name, runtime.RELEASE_RECORD).load() or {}
    return stored.get("previous", "")


# --- what a deploy would do (`--dry-run`) ------------------------------------------------------

def roll_steps(stack: Stack, version: str) -> list[str]:
    """The rolling part of a deploy or rollback to `version`, node by node."""
    found = []
    for batch in batches(stack):
        healthy = " and answers /health" if batch.health else ""
        step = f"{batch.name} on {batch.host.name}: switch to {version}, restart, wait until it runs it{healthy}"
        found.append(f"{batch.name}: out of rotation; {step}; back in rotation" if batch.health else step)
    return found


def deploy_steps(stack: Stack, version: str | None = None) -> list[str]:
    """What `deploy` would do: the release it builds, the hosts it ships to, each node's roll."""
    release = build(version)
    hosts = ", ".join(h.name for h in fleet_hosts(stack))
    return [f"build release {release.version} from {version or 'the working tree'}",
            f"ship {release.version} to {hosts} (hosts that have it are untouched)",
            *roll_steps(stack, release.version), "record it, prune old releases, mark the deploy in Sentry"]


def rollback_steps(stack: Stack) -> list[str]:
    """What `rollback` would do: the recorded previous release, each node's roll."""
    target = _stored_previous(stack)
    if not target:
        raise DeployFailed("no previous release recorded: `ops rollback` needs an earlier `ops deploy`")
    return [f"check {target} is on every app and worker host", *roll_steps(stack, target),
            "record it (pinned), mark the deploy in Sentry"]
