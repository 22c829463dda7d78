"""app: the Django app under gunicorn, one instance per app node, behind nginx.
Release (venv → code → env → current) → migrations → processes → demo data (one-box)."""

from __future__ import annotations

from app.migrate import load_migrations
from app.seed import DEMO_USERS
from app.shards import username_shard
from infra.sharding import physical_db, schema_name
from infra.shardstore import stored_shard_map
from roles.app import runtime
from roles.context import RoleContext
from roles.engine.resources import Command, DesiredState
from roles.pgbouncer.role import RELOAD_NOW
from roles.postgres.commands import psql_path

def app_psql(ctx: RoleContext) -> str:
    """psql through this host's pgbouncer with the app's own credentials (read from app.env, so
    no secret is in the command line): fast checks that keep a no-op converge fast."""
    return (f"set -a && . {runtime.ENV_FILE} && set +a && PGPASSWORD=$PHOTOSTACK_DB_PASSWORD "
            f"{psql_path(ctx.config.postgres.version)} -XAtq -h $PHOTOSTACK_DB_HOST -p $PHOTOSTACK_DB_PORT "
            "-U $PHOTOSTACK_DB_USER")


def migrated(ctx: RoleContext) -> str:
    """Exit 0 when every logical shard has recorded every migration (one query per physical shard)."""
    count = len(load_migrations())
    shard_map = stored_shard_map(ctx.config, ctx.stack)
    checks = []
    for physical in range(shard_map.physical_shards):
        if not shard_map.logical_on(physical):
            continue  # a physical shard just added holds nothing to migrate yet
        counts = " UNION ALL ".join(f"SELECT count(*) c FROM {schema_name(n)}.schema_migrations"
                                    for n in shard_map.logical_on(physical))
        checks.append(f'[ "$({app_psql(ctx)} -d {physical_db(physical)} -c "SELECT min(c) FROM ({counts}) t")" = {count} ]')
    return " && ".join(checks)


def seeded(ctx: RoleContext) -> str:
    """Exit 0 when every demo user exists with at least one photo (one query per physical shard)."""
    shard_map = stored_shard_map(ctx.config, ctx.stack)
    per_shard: dict[int, list[str]] = {}
    for name in DEMO_USERS:
        logical = username_shard(name, shard_map.logical_shards)
        s = schema_name(logical)
        per_shard.setdefault(shard_map.physical_of(logical), []).append(
            f"SELECT count(*) n FROM {s}.users u JOIN {s}.photos p ON p.user_id = u.id WHERE u.username = '{name}'")
    return " && ".join(
        f'[ "$({app_psql(ctx)} -d {physical_db(physical)} -c "SELECT bool_and(n > 0) FROM ({" UNION ALL ".join(counts)}) t")" = t ]'
        for physical, counts in sorted(per_shard.items()))


def pgbouncer_knows_login(ctx: RoleContext) -> Command:
    """pgbouncer reloaded now, not at the end of the run, when it does not take the app's login
    yet: a new dbPassword login (roles/postgres/auth.py app_login) reaches this host's userlist in
    this very converge, and the migrations below log in with it."""
    shard_map = stored_shard_map(ctx.config, ctx.stack)
    database = physical_db(next(p for p in range(shard_map.physical_shards) if shard_map.logical_on(p)))
    return Command("pgbouncer takes the app's login", run=RELOAD_NOW,
                   unless=f"{app_psql(ctx)} -d {database} -c 'SELECT 1' >/dev/null 2>&1")


def desired(ctx: RoleContext) -> DesiredState:
    processes = runtime.app_processes(ctx)
    resources = [
        # release: venv, code, environment, current
        *runtime.release_resources(ctx),
        pgbouncer_knows_login(ctx),
        # migrations across every logical shard (safe from several hosts at once)
        Command("migrate shards", run=runtime.run(ctx, ["python", "-m", "app.migrate", "--quiet"]),
                unless=migrated(ctx)),
        # processes
        *[file for process in processes for file in process.files],
        *[process.service for process in processes],
    ]
    # Demo data only where the stack is one machine to try things on, never for real users.
    if ctx.target.one_machine() and ctx.defaults("app")["app_seed_demo"]:
        resources.append(Command("demo data", run=runtime.run(ctx, ["python", "-m", "app.seed"]), unless=seeded(ctx)))
    return DesiredState(resources=resources, handlers=[runtime.restart_handler(ctx)])
