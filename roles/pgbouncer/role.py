"""pgbouncer: transaction pools in front of every shard. Install → configure (databases,
SCRAM userlist) → service; config changes reload (no restart, clients stay connected)."""

from __future__ import annotations

from dataclasses import dataclass

from infra.sharding import physical_db
from roles.context import RoleContext
from roles.engine.resources import DesiredState, File, Handler, Packages, Service, package_daemon_held
from roles.postgres.auth import (
    ADMIN_USER,
    APP_USER,
    STATS_USER,
    USER_SECRETS,
    app_login,
    scram_verifier,
    stats_password,
)
from roles.postgres.cluster import Cluster, all_clusters, shard_map_file

RELOAD = "reload pgbouncer"
RELOAD_NOW = "service pgbouncer reload"  # SIGHUP: config and userlist re-read, clients stay connected
INI = "/etc/pgbouncer/pgbouncer.ini"


@dataclass(frozen=True)
class Database:
    """One `[databases]` entry."""

    name: str
    host: str
    port: int
    dbname: str


def databases(clusters: list[Cluster]) -> list[Database]:
    """`shard<n>` → the primary, `shard<n>_ro` → the replicas in service (pgbouncer spreads
    connections over a host list with one port; one-box replicas differ by port, so there the
    first replica serves reads). While no replica is in service (after a failover) reads go to
    the primary."""
    result = []
    for primary in (c for c in clusters if c.is_primary):
        result.append(Database(physical_db(primary.shard), primary.address, primary.port, primary.database))
        replicas = [c for c in clusters if c.shard == primary.shard and not c.is_primary and c.in_service]
        replicas = [r for r in replicas if r.port == replicas[0].port]
        readers = replicas or [primary]
        hosts = ",".join(r.address for r in readers)
        result.append(Database(physical_db(primary.shard, replica=True), hosts, readers[0].port, primary.database))
    return result


def pool_size(ctx: RoleContext) -> int:
    """Server connections per pool, so that every pgbouncer together fits Postgres' max_connections."""
    d = ctx.defaults("pgbouncer")
    poolers = sum(1 for h in ctx.hosts if "pgbouncer" in h.roles)
    budget = ctx.defaults("postgres")["postgres_max_connections"] - d["pgbouncer_postgres_reserved"]
    return max(2, min(d["pgbouncer_max_pool_size"], budget // max(1, poolers)))


def desired(ctx: RoleContext) -> DesiredState:
    port = ctx.target.port("pgbouncer")
    # Loopback for the app and worker beside it, and the address other hosts use.
    listen = ",".join(dict.fromkeys(["127.0.0.1", ctx.bind_address]))
    ini = ctx.template(
        "pgbouncer",
        "pgbouncer.ini.j2",
        databases=databases(all_clusters(ctx)),
        listen=listen,
        port=port,
        admin_user=ADMIN_USER,
        stats_user=STATS_USER,
        pool_size=pool_size(ctx),
    )
    salt_key = ctx.secret("scramSaltKey")
    users = {u: scram_verifier(u, ctx.secret(USER_SECRETS[u]), salt_key) for u in (APP_USER, ADMIN_USER)}
    users[STATS_USER] = scram_verifier(STATS_USER, stats_password(ctx.secret(USER_SECRETS[ADMIN_USER])), salt_key)
    # The app's login of the current dbPassword, and while it rotates the other one's (auth.app_login).
    for password in ctx.accepted("dbPassword"):
        login = app_login(password, salt_key)
        users[login] = scram_verifier(login, password, salt_key)
    userlist = ctx.template("pgbouncer", "userlist.txt.j2", users=users)
    pg = {"owner": "postgres", "group": "postgres", "mode": 0o640}
    return DesiredState(
        resources=[
            Packages(("pgbouncer",)),
            # Listen addresses only change on a restart: start pgbouncer with our config.
            package_daemon_held("pgbouncer", INI),
            shard_map_file(ctx),
            File(INI, ini, **pg, notify=(RELOAD,)),
            File("/etc/pgbouncer/userlist.txt", userlist, **pg, notify=(RELOAD,), sensitive=True),
            Service.init_script("pgbouncer"),
        ],
        handlers=[Handler(RELOAD, RELOAD_NOW)],
    )
