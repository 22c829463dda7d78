"""Per-logical-shard schema migrations: `python -m app.migrate [--plan] [--dir DIR]`.

Migrations are `app/schema/NNNN_name.sql`, applied in version order to every logical shard.
Placeholders (plain text replacement, so SQL braces stay untouched):
  {schema}    the shard's schema, e.g. `shard_0042`
  {shard_id}  the logical shard number, e.g. `42`
  {next_id}   infra.sharding.next_id_sql for this shard (used by 0000: schema + next_id())

Each logical shard records what it has applied in `{schema}.schema_migrations`. Every
(shard, migration) pair runs in its own transaction that also records it, holding a
transaction-level advisory lock on the shard (allowed under pgbouncer transaction pooling,
unlike session locks), and re-checks inside the lock, so:
  - re-running is a no-op (idempotent);
  - a crash midway leaves the applied pairs recorded and the failed one fully rolled back
    (resumable: the next run continues where it stopped);
  - two runners at once (two app hosts deploying) never apply one migration twice.

The runner connects to each physical shard's primary through PHOTOSTACK_MIGRATE_DSN, a libpq
conninfo template with `{db}` (pgbouncer database name, `shard3`) and/or `{physical}` (`3`):
through pgbouncer by default, or directly to each primary. It migrates only the logical shards
the shard map (PHOTOSTACK_SHARDMAP) places on that physical shard.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from app.config import AppConfigError, load_app_config
from infra.sharding import ShardMap, next_id_sql, physical_db, schema_name

SCHEMA_DIR = Path(__file__).parent / "schema"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# First key of pg_advisory_xact_lock(int, int); the second is the logical shard.
LOCK_NAMESPACE = 0x7057_3A01


class MigrationError(RuntimeError):
    """A migration failed on one shard (the message names both)."""


@dataclass(frozen=True)
class Migration:
    """One SQL migration template."""

    version: int
    name: str
    template: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    def render(self, logical: int, epoch_ms: int) -> str:
        """The SQL for one logical shard."""
        schema = schema_name(logical)
        return (
            self.template.replace("{next_id}", next_id_sql(schema, logical, epoch_ms))
            .replace("{schema}", schema)
            .replace("{shard_id}", str(logical))
        )


def load_migrations(directory: Path = SCHEMA_DIR) -> list[Migration]:
    """The migrations in a directory, in version order (duplicate or misnamed files are errors)."""
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(f"{path}: version {version:04d} is used twice")
        migrations[version] = Migration(version, match.group(2), path.read_text())
    if 0 not in migrations:
        raise MigrationError(f"{directory}: migration 0000 (the shard schema and next_id) is missing")
    return [migrations[v] for v in sorted(migrations)]


def applied_versions(conn: psycopg.Connection, schema: str) -> set[int]:
    """The versions a logical shard has recorded (empty if it does not exist yet)."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.schema_migrations",)).fetchone()[0]
    if not exists:
        return set()
    return {row[0] for row in conn.execute(f"SELECT version FROM {schema}.schema_migrations")}


def apply_one(conn: psycopg.Connection, migration: Migration, logical: int, epoch_ms: int) -> bool:
    """Apply one migration to one logical shard in one transaction; False if it was already applied."""
    schema = schema_name(logical)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_NAMESPACE, logical))
        if migration.version in applied_versions(conn, schema):
            return False
        conn.execute(migration.render(logical, epoch_ms).encode())
        conn.execute(
            f"INSERT INTO {schema}.schema_migrations (version, name) VALUES (%s, %s)",
            (migration.version, migration.name),
        )
    return True


@dataclass
class MigrationReport:
    """What a run did: (logical shard, migration label) pairs applied and the count skipped."""

    applied: list[tuple[int, str]] = field(default_factory=list)
    skipped: int = 0


def dsn_for(template: str, physical: int) -> str:
    """The conninfo of one physical shard's primary from the DSN template."""
    return template.replace("{db}", physical_db(physical)).replace("{physical}", str(physical))


def migrate(
    shard_map: ShardMap,
    dsn_template: str,
    migrations: list[Migration],
    epoch_ms: int,
    plan_only: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> MigrationReport:
    """Bring every logical shard up to the newest migration (or, with plan_only, list what would run)."""
    if shard_map.physical_shards > 1 and "{db}" not in dsn_template and "{physical}" not in dsn_template:
        raise MigrationError("the DSN template names no {db} or {physical}: every physical shard would be the same database")
    report = MigrationReport()
    for physical in range(shard_map.physical_shards):
        logicals = shard_map.logical_on(physical)
        if not logicals:
            continue
        with psycopg.connect(dsn_for(dsn_template, physical), autocommit=True, prepare_threshold=None) as conn:
            for logical in logicals:
                done = applied_versions(conn, schema_name(logical))
                for migration in migrations:
                    if migration.version in done:
                        report.skipped += 1
                        continue
                    if plan_only:
                        report.applied.append((logical, migration.label))
                        log(f"{physical_db(physical)} {schema_name(logical)} {migration.label} pending")
                        continue
                    try:
                        applied = apply_one(conn, migration, logical, epoch_ms)
                    except psycopg.Error as exc:
                        raise MigrationError(
                            f"{migration.label} failed on {schema_name(logical)} ({physical_db(physical)}): "
                            f"{str(exc).strip().splitlines()[0]}"
                        ) from exc
                    if applied:
                        report.applied.append((logical, migration.label))
                        log(f"{physical_db(physical)} {schema_name(logical)} {migration.label} applied")
                    else:
                        report.skipped += 1
    return report


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; configuration from the environment (see app/config.py)."""
    import os

    parser = argparse.ArgumentParser(prog="python -m app.migrate", description=__doc__.splitlines()[0])
    parser.add_argument("--plan", action="store_true", help="list pending migrations, change nothing")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help="migrations directory")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)
    try:
        config = load_app_config(os.environ)
        shard_map = ShardMap.from_json(config.shardmap_path.read_text())
        migrations = load_migrations(args.dir)
        report = migrate(
            shard_map,
            config.migrate_dsn,
            migrations,
            config.id_epoch_ms,
            plan_only=args.plan,
            log=(lambda line: None) if args.quiet else print,
        )
    except (AppConfigError, MigrationError, OSError, ValueError, psycopg.Error) as exc:
        print(f"migrate: error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    verb = "pending" if args.plan else "applied"
    print(f"migrate: {len(report.applied)} {verb}, {report.skipped} already applied, "
          f"{shard_map.logical_shards} logical shards on {shard_map.physical_shards} physical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
