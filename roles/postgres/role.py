"""postgres: sharded PostgreSQL. Install → the host's data volume mounted (where it has one) →
clusters (configure, start) → logins, databases and logical shards on primaries → replicas
streaming from them."""

from __future__ import annotations

from infra.backup_naming import backup_bucket_name
from infra.host_layout import BUNDLE_DIR, OPS_VENV, POSTGRES_DATA
from infra.shardstore import stored_shard_map
from roles.context import RoleContext
from roles.engine.resources import Command, DesiredState, Directory, File, Filesystem, Handler, Packages, Resource, Service
from roles.postgres import commands, pgbackrest, restore_drill, scheduled
from roles.postgres.auth import REPLICATION_USER, USER_SECRETS, app_login, scram_verifier
from roles.postgres.cluster import PASSFILE, SOCKET_DIR, Cluster, cluster_of, primary_of, replicas_of, shard_map_file
from roles.postgres.tuning import host_memory_mb, memory_settings


def desired(ctx: RoleContext) -> DesiredState:
    d = ctx.defaults("postgres")
    version = ctx.config.postgres.version
    clusters = [cluster_of(ctx, node) for node in ctx.host.nodes_of("postgres")]
    state = DesiredState(
        resources=[
            # install (no default `main` cluster: the package reads createcluster.conf first)
            Directory("/etc/postgresql-common"),
            File("/etc/postgresql-common/createcluster.conf", ctx.template("postgres", "createcluster.conf.j2")),
            Packages((f"postgresql-{version}", *d["postgres_extra_packages"])),
            Command(
                "drop the package's default cluster",
                run=f"pg_dropcluster --stop {version} main",
                unless=f"[ ! -d /etc/postgresql/{version}/main ]",
            ),
            *data_volume(ctx),
            File(PASSFILE, _pgpass(ctx), owner="postgres", group="postgres", mode=0o600, sensitive=True),
            shard_map_file(ctx),
        ]
    )
    state.extend(backups(ctx, clusters))
    # Primaries first: a replica's base backup needs its primary running.
    for cluster in sorted(clusters, key=lambda c: not c.is_primary):
        state.extend(primary(ctx, cluster) if cluster.is_primary else replica(ctx, cluster))
    return state


def data_volume(ctx: RoleContext) -> list[Resource]:
    """The host's own data volume (AWS), formatted if blank and mounted where the clusters live,
    before anything is written there (the package made the directory: postgres owns it); none
    where the data stays on the boot disk (the one-box)."""
    device = ctx.target.data_device(ctx.host)
    if device is None:
        return []
    return [Filesystem(device, POSTGRES_DATA, owner="postgres", group="postgres", mode=0o755)]


def primary(ctx: RoleContext, cluster: Cluster) -> DesiredState:
    """A shard's primary: cluster, config, service, then logins, its database and logical shards."""
    salt_key = ctx.secret("scramSaltKey")
    verifiers = {user: scram_verifier(user, ctx.secret(secret), salt_key) for user, secret in USER_SECRETS.items()}
    # The app's login of the current dbPassword, and while it rotates the other one's.
    logins = {app_login(pw, salt_key): scram_verifier(app_login(pw, salt_key), pw, salt_key)
              for pw in ctx.accepted("dbPassword")}
    verifiers.update(logins)
    logical = stored_shard_map(ctx.config, ctx.stack).logical_on(cluster.shard)
    state = DesiredState(
        resources=[
            same_major(cluster),
            Command(
                f"create cluster {cluster.name}",
                commands.create_cluster(cluster),
                unless=f"[ -f {cluster.config_dir}/postgresql.conf ]",
            )
        ]
    )
    state.extend(configured(ctx, cluster))
    state.resources += [
        # The stanza and a first backup, so that a restore is possible from the start (and
        # the backup-age alert does not page on a fresh stack). Config changes apply in handlers at the
        # end of the run; the backup needs archiving on now, hence the reload first.
        Command(f"pgbackrest stanza and first backup of {pgbackrest.stanza(cluster)}",
                f"{pgbackrest.stanza_create(cluster)} && {commands.reload_cluster(cluster)} && "
                f"{pgbackrest.backup(cluster, 'full')}",
                unless=pgbackrest.has_backup(cluster, None if ctx.target.object_storage() else pgbackrest.REPO_PATH)),
        # The restore drills' results table, with a first entry: the age of the last good drill
        # counts from here, so drills that never run page too (pgbackrest_drill_ plugin).
        Command(f"restore drill results on {cluster.name}",
                commands.psql(cluster, f"{restore_drill.TABLE_SQL}; INSERT INTO {restore_drill.TABLE} (stanza, detail) "
                                       f"VALUES ('{pgbackrest.stanza(cluster)}', 'drills scheduled by converge');"),
                unless=commands.psql_is_true(cluster, f"SELECT to_regclass('{restore_drill.TABLE}') IS NOT NULL")),
        Command(
            f"logins on {cluster.name}",
            commands.psql(cluster, commands.roles_sql(verifiers, tuple(logins))),
            unless=commands.psql_is_true(cluster, commands.roles_match(verifiers, tuple(logins))),
            sensitive=True,
        ),
        Command(
            f"database {cluster.database}",
            commands.psql(cluster, commands.create_database_sql(cluster.database)),
            unless=commands.psql_is_true(cluster, commands.database_exists(cluster.database)),
        ),
        Command(
            f"{len(logical)} logical shards on {cluster.name}",
            commands.psql(cluster, commands.logical_shards_sql(logical, ctx.config.postgres.id_epoch_ms), cluster.database),
            unless=commands.psql_is_true(cluster, commands.logical_shards_exist(logical), cluster.database),
        ),
    ]
    return state


def replica(ctx: RoleContext, cluster: Cluster) -> DesiredState:
    """A streaming replica: base backup from its primary (with a slot), config, service."""
    source = primary_of(ctx, cluster)
    state = DesiredState(
        resources=[
            same_major(cluster),
            Command(
                f"base backup {cluster.name} from {source.name}",
                commands.build_replica(cluster, source),
                unless=commands.replica_built(cluster),
            )
        ]
    )
    state.extend(configured(ctx, cluster))
    return state


def configured(ctx: RoleContext, cluster: Cluster) -> DesiredState:
    """A cluster's config files and running service; config changes reload (restart if needed)."""
    d = ctx.defaults("postgres")
    clusters_on_host = len(ctx.host.nodes_of("postgres"))
    share = d["postgres_memory_share_onebox"] if ctx.target.one_machine() else d["postgres_memory_share_dedicated"]
    memory_mb = host_memory_mb(ctx)
    source = primary_of(ctx, cluster)
    replicas = replicas_of(ctx, cluster) if cluster.is_primary else []
    # Only replicas in service may be synchronous standbys: one waiting for its rebuild after a
    # failover would block every commit (runbooks/shard_primary_down.md states the trade-off).
    standbys = [r for r in replicas if r.in_service]
    sync = ctx.config.postgres.synchronous_commit and standbys
    reload = f"reload postgres {cluster.name}"
    conf = ctx.template(
        "postgres",
        "postgresql.conf.j2",
        cluster=cluster,
        primary=source,
        listen=ctx.bind_address,
        memory=memory_settings(memory_mb, clusters_on_host, share, d["postgres_max_connections"]),
        memory_mb=memory_mb,
        clusters_on_host=clusters_on_host,
        synchronous_standby_names=f"ANY 1 ({', '.join(r.name for r in standbys)})" if sync else "",
        replication_user=REPLICATION_USER,
        passfile=PASSFILE,
        archive_command=pgbackrest.archive_command(cluster),
        restore_command=pgbackrest.restore_command(cluster),
        archive_timeout_s=ctx.config.backups.archive_timeout_s,
    )
    hba = ctx.template("postgres", "pg_hba.conf.j2", networks=_networks(ctx), replication_user=REPLICATION_USER)
    pg = {"owner": "postgres", "group": "postgres"}
    return DesiredState(
        resources=[
            *start_guard(ctx, cluster),
            File(f"{cluster.config_dir}/postgresql.conf", conf, **pg, notify=(reload,)),
            File(f"{cluster.config_dir}/pg_hba.conf", hba, **pg, mode=0o640, notify=(reload,)),
            Service(
                f"postgres {cluster.name}",
                start=commands.ctl(cluster, "start"),
                status=commands.running(cluster),
                stop=commands.ctl(cluster, "stop"),
            ),
        ],
        handlers=[Handler(reload, commands.reload_cluster(cluster))],
    )


def start_guard(ctx: RoleContext, cluster: Cluster) -> list[File | Command]:
    """On systemd hosts (where a failover powers the old primary's machine off, and anyone may
    start it again): the cluster unit's drop-in that runs boot_guard before every start, loaded
    by systemd before the cluster's first start."""
    if not ctx.target.systemd_hosts():
        return []
    unit = f"postgresql@{cluster.version}-{cluster.name}.service"
    drop_in = ctx.template("postgres", "start-guard.conf.j2", cluster=cluster, stack=ctx.stack,
                           python=f"{OPS_VENV}/bin/python", stacks_dir=BUNDLE_DIR)
    return [
        File(f"/etc/systemd/system/{unit}.d/photostack-start-guard.conf", drop_in),
        Command(f"systemd loads {cluster.name}'s start guard", "systemctl daemon-reload",
                unless=f'[ "$(systemctl show -p NeedDaemonReload --value {unit})" = no ]'),
    ]


def backups(ctx: RoleContext, clusters: list[Cluster]) -> DesiredState:
    """pgBackRest: its config (a stanza per shard with a member here), log dir and, on the
    one-box, the local repository (on AWS the backup bucket); then the scheduled backups and
    restore drills (roles/postgres/scheduled.py)."""
    d = ctx.defaults("postgres")
    stanzas: dict[str, list[Cluster]] = {}
    for cluster in sorted(clusters, key=lambda c: (c.shard, c.replica)):
        stanzas.setdefault(pgbackrest.stanza(cluster), []).append(cluster)
    s3 = ({"bucket": backup_bucket_name(ctx.config, ctx.stack), "region": ctx.config.region}
          if ctx.target.object_storage() else None)
    conf = ctx.template("postgres", "pgbackrest.conf.j2", s3=s3, repo_path=pgbackrest.REPO_PATH,
                        log_path=pgbackrest.LOG_PATH, backups=ctx.config.backups, stanzas=list(stanzas.items()),
                        socket_dir=SOCKET_DIR, process_max=d["postgres_backup_process_max"])
    pg = {"owner": "postgres", "group": "postgres"}
    resources = [
        Directory(pgbackrest.CONFIG.rsplit("/", 1)[0]),
        File(pgbackrest.CONFIG, conf, owner="root", group="postgres", mode=0o640),
        Directory(pgbackrest.LOG_PATH, **pg, mode=0o750),
    ]
    if s3 is None:
        # pgBackRest wants its repository owned by postgres; /var/lib above it stays root's.
        resources.append(Directory(pgbackrest.REPO_PATH, **pg, mode=0o750))
    state = DesiredState(resources=resources)
    state.extend(scheduled.scheduled(ctx, clusters, commands.psql_path(ctx.config.postgres.version)))
    return state


def _networks(ctx: RoleContext) -> list[str]:
    """Where logins may come from: loopback on the one-box, the VPC on AWS."""
    return ctx.target.private_networks()


def _pgpass(ctx: RoleContext) -> str:
    password = ctx.secret("replicationPassword").replace("\\", "\\\\").replace(":", "\\:")
    return ctx.template("postgres", "pgpass.j2", replication_user=REPLICATION_USER, replication_password=password)


def same_major(cluster: Cluster) -> Command:
    """Stop before creating `cluster` under a new major while its data lives under another (a new
    image or an unpinned postgres.version would otherwise start an empty cluster beside it): the
    major is the one the cluster was created with until an upgrade moves it on purpose."""
    others = f"ls -d /etc/postgresql/*/{cluster.name} 2>/dev/null | grep -v '^/etc/postgresql/{cluster.version}/'"
    return Command(
        f"keep the PostgreSQL major of {cluster.name}",
        run=(f"echo \"cluster {cluster.name} exists under another PostgreSQL major ($({others} | cut -d/ -f4)), "
             f"not {cluster.version}: pin photostack:postgres.version to it\" >&2; exit 1"),
        unless=f"! {others} | grep -q .",
    )
