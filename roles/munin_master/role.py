"""munin_master: the monitoring host. Install → munin.conf (nodes, limits, pages) → dashboard builder
→ fast health watcher (its own account) → (AWS) nginx serving the Munin pages to the load balancer."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, replace

from infra import host_layout
from infra.config import REPO_ROOT
from infra.topology import Node
from infra.alerts import WEB_TIER, web_tier_key
from monitoring.agents.health_watcher import Target, WatcherConfig
from monitoring.agents.munin_alert import munin_conf_lines
from monitoring.wallboard_markers import AUDIT_FILE, AUDIT_URL, PAGE_FILE, PAGE_URL
from roles.context import RoleContext
from roles.engine.resources import Absent, DesiredState, Directory, File, Handler, Packages, Service, SystemUser
from roles.munin_node.plugins import host_plugins, limits, munin_name
from roles.nginx.dashboard_login import PASSWORD_FILE, password_file, realm

RESTART_WATCHER = "restart health watcher"
RESTART_CRON_LOOP = "restart munin-cron loop"
RELOAD_DASHBOARD = "reload the dashboard's nginx"


@dataclass(frozen=True)
class MuninHost:
    """A host as munin.conf lists it, with the limits of each of its plugins."""

    name: str
    address: str
    port: int
    limits: tuple[tuple[str, str, str, str], ...]  # (plugin, field, level, value)


def _unread_secret(name: str) -> str:
    """Stands in for a peer's secret in plugin settings munin.conf does not list."""
    return ""


def munin_hosts(ctx: RoleContext) -> list[MuninHost]:
    """Every host's munin-node, with the per-field limits of the plugins it runs."""
    node = Node("munin_node", 0, "")
    found = []
    for host in ctx.hosts:
        # Only names and limits go into munin.conf: the master never reads another host's passwords
        # (its instance profile on AWS grants none of them).
        plugins = host_plugins(replace(ctx, host=host, secret=_unread_secret))
        rows = tuple((p.name, f, level, v) for p in plugins for f, level, v in limits(ctx.config, p.kind))
        found.append(MuninHost(munin_name(host.name), ctx.target.address(host), ctx.port(node), rows))
    return found


def watcher_config(ctx: RoleContext) -> WatcherConfig:
    """Every nginx and app process's own check (/health/node: is this node up, whatever its
    dependencies do), for the fast health watcher. On AWS the
    nginx nodes share the load balancer alarm's dedup key: one outage, one incident."""
    d = ctx.defaults("munin_master")
    shared = web_tier_key(ctx.stack) if ctx.target.load_balancer_networks() else None
    targets = tuple(
        Target(node.name, host.name, f"http://{ctx.address(node)}:{ctx.port(node)}/health/node",
               shared if role == WEB_TIER else None)
        for host in ctx.hosts for role in ("nginx", "app") for node in host.nodes_of(role)
    )
    return WatcherConfig(ctx.stack, targets, float(ctx.config.monitoring.health_probe_interval_s),
                         d["munin_master_failures_to_page"], d["munin_master_successes_to_resolve"],
                         float(d["munin_master_probe_timeout_s"]))


def daemon(name: str, pidfile: str, argv: list[str], user: str = "root", log: str = "/dev/null",
           env: dict[str, str] | None = None) -> Service:
    """A background process managed with start-stop-daemon (works with or without systemd)."""
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    command = " ".join(shlex.quote(a) for a in argv)
    start = (f"start-stop-daemon --start --background --make-pidfile --pidfile {pidfile} --chuid {user} "
             f"--exec /bin/sh -- -c {shlex.quote(f'exec env {exports} {command} >>{log} 2>&1')}")
    return Service(name, start=start, status=f"start-stop-daemon --status --pidfile {pidfile}",
                   stop=f"start-stop-daemon --stop --retry 5 --remove-pidfile --pidfile {pidfile}")


def desired(ctx: RoleContext) -> DesiredState:
    d = ctx.defaults("munin_master")
    # The code the hooks and the watcher run, and where the hooks keep the alert state (`ops
    # alerts` reads it there). One-box: this checkout, the monitoring venv, the state dir. AWS: what
    # the host's user_data made (the project installed in the ops venv, the unpacked bundle, the
    # host's state dir), whichever machine renders this: the host at boot, or an operator's converge.
    if ctx.target.operators_share_machine():
        python = f"{ctx.defaults('munin_node')['munin_node_venv']}/bin/python"
        repo = d["munin_master_repo"] or str(REPO_ROOT)
        state_root = os.environ.get("PHOTOSTACK_STATE_DIR", f"{repo}/.state")
    else:
        python = f"{host_layout.OPS_VENV}/bin/python"
        repo = d["munin_master_repo"] or host_layout.BUNDLE_DIR
        state_root = str(host_layout.STATE_ROOT)
    hook = d["munin_master_alert_hook"]
    munin_conf = ctx.template("munin_master", "munin.conf.j2", contact_lines=munin_conf_lines(hook),
                              hosts=munin_hosts(ctx))
    hook_script = ctx.template("munin_master", "munin-alert-hook.j2", python=shlex.quote(python),
                               repo=shlex.quote(repo), state_root=shlex.quote(state_root),
                               stack=shlex.quote(ctx.stack))
    watcher_user, watcher_hook = d["munin_master_watcher_user"], d["munin_master_watcher_hook"]
    watcher_hook_script = ctx.template("munin_master", "health-alert-hook.j2", python=shlex.quote(python),
                                       repo=shlex.quote(repo), state_root=shlex.quote(state_root),
                                       watcher_config=shlex.quote(d["munin_master_watcher_config"]))
    sudoers = ctx.template("munin_master", "sudoers.j2", hook=hook, watcher_user=watcher_user,
                           watcher_hook=watcher_hook)
    interval = ctx.config.monitoring.munin_interval_s
    resources = [
        # install
        Packages(("munin", "sudo")),
        # configure: which nodes to poll, their limits, where pages go
        File("/etc/munin/munin.conf", munin_conf),
        File(hook, hook_script, mode=0o755),
        File("/etc/sudoers.d/photostack-munin", sudoers, mode=0o440),
        Directory(d["munin_master_htmldir"], owner="munin", group="munin"),
        Directory(d["munin_master_dbdir"], owner="munin", group="munin"),
        # the wallboard's page markers and audit list: root's alert hooks and publisher write them, nginx serves them
        Directory(os.path.dirname(PAGE_FILE)),
        # the fast health watcher: its own account, which writes its home (the log) and nothing else;
        # it pages through its root-owned hook (a new hook restarts it: from an older, root watcher)
        SystemUser(watcher_user, d["munin_master_watcher_home"]),
        Directory(d["munin_master_watcher_home"], owner=watcher_user, group=watcher_user, mode=0o700),
        File(watcher_hook, watcher_hook_script, mode=0o755, notify=(RESTART_WATCHER,)),
        File(d["munin_master_watcher_config"], watcher_config(ctx).to_json(), notify=(RESTART_WATCHER,)),
        daemon("photostack-health-watcher", d["munin_master_watcher_pidfile"],
               [python, "-m", "monitoring.agents.health_watcher", "--config", d["munin_master_watcher_config"],
                "--hook", watcher_hook],
               user=watcher_user, log=d["munin_master_watcher_log"], env={"PYTHONPATH": repo}),
    ]
    handlers = [Handler(RESTART_WATCHER, resources[-1].restart)]
    # The wallboard's list of recent changes: the stack's audit trail (the state dir's, or CloudWatch
    # Logs through the instance profile) copied beside the page markers. Root: the one-box's trail
    # and the directory nginx serves are root's.
    resources.append(daemon("photostack-audit-publisher", d["munin_master_audit_pidfile"],
                            [python, "-P", "-m", "ops.audit", "--stack", ctx.stack, "--publish", AUDIT_FILE],
                            log=d["munin_master_audit_log"], env={"PYTHONPATH": repo, "PHOTOSTACK_STATE_DIR": state_root}))
    # The dashboard: munin-cron every munin_interval_s (Debian's /etc/cron.d/munin where cron runs).
    if not ctx.target.systemd_hosts():
        loop = daemon("munin-cron-loop", d["munin_master_cron_pidfile"], ["/bin/sh", d["munin_master_cron_loop"]],
                      user="munin")
        resources += [
            Directory(d["munin_master_cron_loop"].rsplit("/", 1)[0]),
            File(d["munin_master_cron_loop"], ctx.template("munin_master", "munin-cron-loop.j2", interval=interval),
                 mode=0o755, notify=(RESTART_CRON_LOOP,)),
            loop,
        ]
        handlers.append(Handler(RESTART_CRON_LOOP, loop.restart))
    else:
        resources += [Packages(("cron",)), Service.init_script("cron")]
    if ctx.target.load_balancer_networks():  # else the nginx role serves the pages on its host
        resources += dashboard_site(ctx)
        handlers.append(Handler(RELOAD_DASHBOARD, "nginx -t -q && service nginx reload"))
    return DesiredState(resources=resources, handlers=handlers)


def dashboard_site(ctx: RoleContext) -> list:
    """AWS: nginx serving the Munin pages to the load balancer (the one-box's nginx role serves
    them itself, from the same host)."""
    d = ctx.defaults("munin_master")
    site = ctx.template("munin_master", "dashboard-site.conf.j2", port=d["munin_master_dashboard_port"],
                        htmldir=d["munin_master_htmldir"], published=((PAGE_URL, PAGE_FILE), (AUDIT_URL, AUDIT_FILE)),
                        dashboard_realm=realm(ctx), dashboard_password_file=PASSWORD_FILE)
    return [
        Packages(("nginx",)),
        Absent("/etc/nginx/sites-enabled/default", notify=(RELOAD_DASHBOARD,)),
        password_file(ctx, notify=(RELOAD_DASHBOARD,)),
        File("/etc/nginx/conf.d/photostack-munin.conf", site, notify=(RELOAD_DASHBOARD,)),
        Service.init_script("nginx"),
    ]
