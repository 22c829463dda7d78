"""The per-shard migration runner: idempotent, resumable, per-shard transactions; its CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import psycopg
import pytest

from tests.app_services import LOGICAL_SHARDS, PHYSICAL_SHARDS, REPO


@pytest.fixture()
def mig(app_stack, tmp_path):
    """Fresh `mig0`/`mig1` databases, reached directly (not through pgbouncer)."""
    from app import migrate
    from infra.sharding import ShardMap

    with psycopg.connect(app_stack.direct_dsn("postgres"), autocommit=True) as conn:
        for n in range(PHYSICAL_SHARDS):
            conn.execute(f"DROP DATABASE IF EXISTS mig{n}")
            conn.execute(f"CREATE DATABASE mig{n}")
    template = f"host=127.0.0.1 port={app_stack.pg_port} dbname=mig{{physical}} user=postgres"
    shard_map = ShardMap.from_json(app_stack.shardmap_path.read_text())
    return migrate, shard_map, template, tmp_path


def recorded(stack, logical: int, physical: int) -> list[int]:
    with psycopg.connect(stack.direct_dsn(f"mig{physical}")) as conn:
        return [r[0] for r in conn.execute(f"SELECT version FROM shard_{logical:04d}.schema_migrations ORDER BY 1")]


def has_table(stack, physical: int, name: str) -> bool:
    with psycopg.connect(stack.direct_dsn(f"mig{physical}")) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def test_migrate_is_idempotent(app_stack, mig):
    migrate, shard_map, template, _ = mig
    migrations = migrate.load_migrations()
    first = migrate.migrate(shard_map, template, migrations, 1314220021721)
    assert len(first.applied) == LOGICAL_SHARDS * len(migrations) and first.skipped == 0
    for logical in range(LOGICAL_SHARDS):
        assert recorded(app_stack, logical, shard_map.physical_of(logical)) == [m.version for m in migrations]
    # next_id() encodes the shard's own number.
    with psycopg.connect(app_stack.direct_dsn("mig1")) as conn:
        new_id = conn.execute("SELECT shard_0006.next_id()").fetchone()[0]
    assert (new_id >> 10) & 8191 == 6

    second = migrate.migrate(shard_map, template, migrations, 1314220021721)
    assert second.applied == [] and second.skipped == LOGICAL_SHARDS * len(migrations)


def test_migrate_resumes_after_a_failure(app_stack, mig):
    migrate, shard_map, template, tmp_path = mig
    for path in migrate.SCHEMA_DIR.glob("*.sql"):
        shutil.copy(path, tmp_path)
    # Fails on logical shard 5 only (division by zero), after creating a table.
    (tmp_path / "0099_probe.sql").write_text("CREATE TABLE {schema}.probe (x int);\nSELECT 1 / ({shard_id} - 5);\n")
    with pytest.raises(migrate.MigrationError, match="0099_probe failed on shard_0005"):
        migrate.migrate(shard_map, template, migrate.load_migrations(tmp_path), 1314220021721)
    # Shards 0-4 (physical 0 holds 0-3, physical 1 holds 4-7 and is migrated in order) got it ...
    for logical in range(5):
        assert 99 in recorded(app_stack, logical, shard_map.physical_of(logical))
        assert has_table(app_stack, shard_map.physical_of(logical), f"shard_{logical:04d}.probe")
    # ... the failed one was rolled back whole, and the rest were not reached.
    assert 99 not in recorded(app_stack, 5, 1) and not has_table(app_stack, 1, "shard_0005.probe")
    assert not has_table(app_stack, 1, "shard_0006.schema_migrations")

    (tmp_path / "0099_probe.sql").write_text("CREATE TABLE {schema}.probe (x int);\n")
    resumed = migrate.migrate(shard_map, template, migrate.load_migrations(tmp_path), 1314220021721)
    everything = ["0000_shard", "0001_core", "0099_probe"]
    assert resumed.applied == [(5, "0099_probe")] + [(n, label) for n in (6, 7) for label in everything]


def test_migrate_cli_plan_and_bad_config(app_stack, mig):
    migrate, shard_map, template, _ = mig
    env = {**os.environ, "PHOTOSTACK_MIGRATE_DSN": template}
    plan = subprocess.run([sys.executable, "-m", "app.migrate", "--plan", "--quiet"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    pending = LOGICAL_SHARDS * len(migrate.load_migrations())
    assert f"{pending} pending, 0 already applied" in plan.stdout
    run = subprocess.run([sys.executable, "-m", "app.migrate", "--quiet"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and f"{pending} applied" in run.stdout

    bad = subprocess.run([sys.executable, "-m", "app.migrate"], cwd=REPO,
                         env={**env, "PHOTOSTACK_SHARDMAP": ""}, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "migrate: error: PHOTOSTACK_SHARDMAP is not set"


def test_misnamed_migration_file_is_refused(tmp_path):
    from app.migrate import MigrationError, load_migrations

    (tmp_path / "0000_shard.sql").write_text("{next_id}")
    (tmp_path / "1_bad.sql").write_text("")
    with pytest.raises(MigrationError, match="NNNN_name.sql"):
        load_migrations(tmp_path)


def test_dsn_template_must_tell_shards_apart():
    from app.migrate import MigrationError, load_migrations, migrate
    from infra.sharding import ShardMap

    with pytest.raises(MigrationError, match="names no"):
        migrate(ShardMap((0, 1), 2), "host=127.0.0.1 dbname=one", load_migrations(), 0)
