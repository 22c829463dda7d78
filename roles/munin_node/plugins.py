"""Which photostack Munin plugins a host gets, and their settings: a pure function of its nodes.

A plugin instance is a name in /etc/munin/plugins (what Munin graphs and alerts on), the plugin
script it runs (`source`, in monitoring/agents/munin/plugins/; wildcard scripts end in `_` and serve
one instance per service, e.g. `redis_` as `redis_primary`), and its plugin-conf.d settings.
Limits come from `monitoring.limits` keyed by `kind.field`, where `kind` is the source without
its trailing `_`: `redis.used_memory` applies to every `redis_*` instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra.config import StackConfig
from infra.topology import Node
from roles.context import RoleContext
from roles.postgres.cluster import all_clusters
from roles.postgres.auth import stats_password
from roles.rabbitmq.role import MUNIN_USER as BROKER_MUNIN_USER, munin_password as broker_munin_password
from roles.redis.acl import MUNIN_USER, munin_password
from roles.redis.primary import primary_node

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "monitoring" / "agents" / "munin" / "plugins"
HELPER = PLUGIN_DIR.parent / "photostack_munin.py"
# pgbouncer rides along with app and worker hosts (no node of its own): one pool per host.
PGBOUNCER = Node("pgbouncer", 0, "")


@dataclass(frozen=True)
class PluginInstance:
    """One plugin as installed on a host."""

    name: str
    source: str
    env: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    group: str | None = None

    @property
    def kind(self) -> str:
        return self.source.rstrip("_")


def limits(config: StackConfig, kind: str) -> list[tuple[str, str, str]]:
    """(field, "warning"|"critical", value) of every limit set for plugins of `kind`."""
    found = []
    for key, limit in sorted(config.monitoring.limits.items()):
        plugin, _, field = key.partition(".")
        if plugin == kind:
            found += [(field, level, value) for level, value in (("warning", limit.warning),
                                                                  ("critical", limit.critical)) if value]
    return found


def _instance(ctx: RoleContext, name: str, source: str, user: str | None = None, group: str | None = None,
              **settings: object) -> PluginInstance:
    kind = source.rstrip("_")
    # `user` and `group` are munin-node directives (the Unix account), not plugin settings.
    env = [(key, str(value)) for key, value in settings.items()]
    env += [(f"{field}_{level}", value) for field, level, value in limits(ctx.config, kind)]
    env += list(_default_limits(ctx.config, kind).items())
    return PluginInstance(name, source, tuple(env), user, group)


def host_plugins(ctx: RoleContext) -> list[PluginInstance]:
    """The photostack plugins of `ctx.host`, from the nodes it runs."""
    d = ctx.defaults("munin_node")
    host = ctx.host
    found: list[PluginInstance] = []
    for node in host.nodes_of("nginx")[:1]:  # one nginx per host
        found.append(_instance(ctx, "nginx", "nginx", group="adm",
                               status_url=f"http://{ctx.address(node)}:{ctx.port(node)}/nginx_status",
                               access_log="/var/log/nginx/access.log"))
    for node in host.nodes_of("app"):
        found.append(_instance(ctx, f"gunicorn_{node.name.replace('-', '_')}", "gunicorn_", port=ctx.port(node)))
    if "pgbouncer" in host.roles:
        found.append(_instance(ctx, "pgbouncer", "pgbouncer", host=ctx.bind_address,
                               port=ctx.port(PGBOUNCER), login=d["munin_node_pgbouncer_user"],
                               password=stats_password(ctx.secret("pgbouncerAdminPassword"))))
    if host.nodes_of("postgres"):
        # Every postgres node with its cluster's current role, read once (the stored primaries
        # live in SSM on AWS: all_clusters reads them once, not once per node).
        members = list(zip((n for h in ctx.hosts for n in h.nodes_of("postgres")), all_clusters(ctx)))
        for node, cluster in members:
            if node not in host.nodes_of("postgres"):
                continue
            found.append(_instance(ctx, f"postgres_connections_{_suffix(node)}", "postgres_connections_",
                                   user="postgres", host="/var/run/postgresql", port=cluster.port))
            found.append(_instance(ctx, f"postgres_archive_{_suffix(node)}", "postgres_archive_",
                                   user="postgres", host="/var/run/postgresql", port=cluster.port))
            if cluster.replica == 0:  # one reader per shard of the shared repository: member 0's host
                # group too: pgbackrest.conf is root:postgres 0640, and munin-node would run the
                # plugin with its own group otherwise.
                found.append(_instance(ctx, f"pgbackrest_backup_{cluster.database}", "pgbackrest_backup_",
                                       user="postgres", group="postgres", stanza=cluster.database))
                # The drill results table streams to every member: member 0's copy is read.
                found.append(_instance(ctx, f"pgbackrest_drill_{cluster.database}", "pgbackrest_drill_",
                                       user="postgres", host="/var/run/postgresql", port=cluster.port,
                                       stanza=cluster.database))
            if cluster.is_primary:  # lag is measured on the primary now (stored state), once per other member
                # and the shard's rows and size per logical shard, where its data is written
                for measure in ("rows", "size"):
                    found.append(_instance(ctx, f"postgres_shard_{measure}_{cluster.shard}",
                                           f"postgres_shard_{measure}_", user="postgres", host="/var/run/postgresql",
                                           port=cluster.port, database=cluster.database))
                for other, member in members:
                    if member.shard == cluster.shard and not member.is_primary:
                        found.append(_instance(
                            ctx, f"postgres_replication_{_suffix(other)}", "postgres_replication_",
                            user="postgres", host="/var/run/postgresql", port=cluster.port, replica=member.slot))
    for node in host.nodes_of("redis"):
        redis = {"host": ctx.address(node), "port": ctx.port(node), "login": MUNIN_USER,
                 "password": munin_password(ctx.secret("redisPassword"))}
        found.append(_instance(ctx, f"redis_{node.name.removeprefix('redis-')}", "redis_", **redis))
        if node == primary_node(ctx.config, ctx.stack):  # the app's counters live on the primary now
            for plugin, key in d["munin_node_counters"].items():
                found.append(_instance(ctx, plugin, plugin, key=key, **redis))
    for node in host.nodes_of("rabbitmq")[:1]:  # the management API shows the whole cluster
        broker = {"url": f"http://{ctx.address(node)}:{d['munin_node_rabbitmq_management_port']}",
                  "vhost": ctx.config.rabbitmq.vhost, "login": BROKER_MUNIN_USER,
                  "password": broker_munin_password(ctx.secret("rabbitmqPassword"))}
        found.append(_instance(ctx, "rabbitmq", "rabbitmq", **broker))
        found.append(_instance(ctx, "celery", "celery", **broker))
    return found


def _default_limits(config: StackConfig, kind: str) -> dict[str, str]:
    """Limits the backup plugins page on unless monitoring.limits sets that field's own: a
    backup or good restore drill later than its schedule's longest gap allows (warning: one hour
    after a run was due) or older than backups.staleAfterH / drillStaleAfterH (critical), a
    failed drill, a failing archiver, segments piling up unarchived."""
    b = config.backups

    def age(gap_h: float, stale_h: int) -> dict[str, str]:
        return {"warning": f"{min(gap_h + 1, stale_h):g}", "critical": str(stale_h)}

    defaults = {
        "pgbackrest_backup": {"age_hours": age(b.backup_gap_h, b.stale_after_h)},
        "pgbackrest_drill": {"failed": {"critical": "0.5"}, "age_hours": age(b.drill_gap_h, b.drill_stale_after_h)},
        "postgres_archive": {"failing": {"critical": "0.5"}, "ready_segments": {"warning": "8", "critical": "64"}},
    }.get(kind, {})
    return {f"{field}_{level}": value for field, levels in defaults.items()
            if f"{kind}.{field}" not in config.monitoring.limits for level, value in levels.items()}


def _suffix(node: Node) -> str:
    """A postgres node's part of its plugin names: `postgres-0-replica1` → `0_replica1`."""
    return node.name.removeprefix("postgres-").replace("-", "_")


def munin_name(host_name: str) -> str:
    """The name Munin knows a host by: munin.conf's section and munin-node's host_name. Munin
    refuses a host name with characters a DNS name cannot hold (`munin_master-0`: "contains
    illegal characters", and munin-update then updates nothing), so `_` becomes `-`."""
    return host_name.replace("_", "-")
