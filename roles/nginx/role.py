"""nginx: the web tier. Install → configure (main config, site, placeholder page) → service."""

from __future__ import annotations

import math

from infra.records import record
from monitoring.wallboard_markers import AUDIT_FILE, AUDIT_URL, PAGE_FILE, PAGE_URL
from roles.context import RoleContext
from roles.nginx.dashboard_login import PASSWORD_FILE, password_file, realm
from roles.engine.resources import Absent, DesiredState, Directory, File, Handler, Packages, Service, package_daemon_held

RELOAD = "reload nginx"
SITE = "/etc/nginx/conf.d/photostack.conf"
DEFAULT_SITE = "/etc/nginx/sites-enabled/default"  # the package's, on *:80


DRAINED = "drained"  # the stored record of app nodes a deploy took out of rotation (infra/records.py)


def drained_nodes(ctx: RoleContext) -> set[str]:
    """App nodes marked `down` in every upstream: a deploy is restarting them."""
    return set(record(ctx.config, ctx.stack, DRAINED).load() or [])


def app_servers(ctx: RoleContext) -> list[tuple[str, bool]]:
    """Upstream app servers (address:port, drained?); none gives the placeholder site."""
    drained = drained_nodes(ctx)
    return [
        (f"{ctx.address(node)}:{ctx.port(node)}", node.name in drained)
        for host in ctx.hosts
        for node in host.nodes_of("app")
    ]


def load_balancer_cidrs(ctx: RoleContext) -> list[str]:
    """Where the load balancer's requests come from, whose X-Forwarded-For/-Proto nginx believes:
    the VPC on AWS (its security group lets only the ALB reach nginx); none on one-box."""
    return ctx.target.load_balancer_networks()


def inflight_limit(ctx: RoleContext, app_server_count: int) -> int:
    """Requests this nginx lets into the app tier at once: its share of the app tier's threads."""
    threads = app_server_count * ctx.config.fleets.app.processes * ctx.defaults("app")["app_threads"]
    factor = float(ctx.defaults("nginx")["nginx_inflight_per_app_thread"])
    return max(1, math.ceil(threads * factor / ctx.config.fleets.nginx.count))


def desired(ctx: RoleContext) -> DesiredState:
    d = ctx.defaults("nginx")
    # One nginx per host: on one-box the first nginx node stands for the tier.
    node = ctx.host.nodes_of("nginx")[0]
    listen = f"{ctx.bind_address}:{ctx.port(node)}"
    servers = app_servers(ctx)
    site = ctx.template(
        "nginx",
        "site.conf.j2",
        listen=listen,
        app_servers=servers,
        inflight_limit=inflight_limit(ctx, len(servers)),
        media_root="/srv/photostack/media",
        load_balancer_cidrs=load_balancer_cidrs(ctx),
        munin_htmldir=ctx.defaults("munin_master").get("munin_master_htmldir", ""),
        published=((PAGE_URL, PAGE_FILE), (AUDIT_URL, AUDIT_FILE)),
        dashboard_realm=realm(ctx),
        dashboard_password_file=PASSWORD_FILE,
    )
    return DesiredState(
        resources=[
            Packages(("nginx",)),
            # Debian starts the package's nginx (its default site on *:80) at install where
            # services may start (systemd hosts); a reload cannot move it to this host's own
            # address (bind: address in use, while `service nginx reload` still exits 0). The
            # install makes the default site after this run read its facts: gone here too.
            package_daemon_held("nginx", SITE, then=f"rm -f {DEFAULT_SITE}"),
            Absent(DEFAULT_SITE, notify=(RELOAD,)),
            File("/etc/nginx/nginx.conf", ctx.template("nginx", "nginx.conf.j2"), notify=(RELOAD,)),
            password_file(ctx, notify=(RELOAD,)),
            File(SITE, site, notify=(RELOAD,)),
            Directory(d["nginx_web_root"]),
            File(f"{d['nginx_web_root']}/index.html", ctx.template("nginx", "index.html.j2")),
            Service.init_script("nginx"),
        ],
        handlers=[Handler(RELOAD, "nginx -t -q && service nginx reload")],
    )
