"""SQL and shell of a logical shard's move, built here as strings and run by ops/reshard.py.

Names: the publication (on the source primary), the subscription (on the target primary) and
the logical replication slot (on the source, created by the subscription) are all
`move_<logical>`, so a resumed or rolled-back move finds what an interrupted one left.
"""

from __future__ import annotations

from infra.sharding import schema_name
from roles.postgres.auth import APP_USER, REPLICATION_USER
from roles.postgres.cluster import PASSFILE, SOCKET_DIR, Cluster
from roles.postgres.commands import sql_literal

# What the cut-over takes from the app on the source, and gives back if the move is rolled back.
WRITES = "INSERT, UPDATE, DELETE, TRUNCATE"


def move_name(logical: int) -> str:
    """The publication, subscription and slot of one logical shard's move."""
    return f"move_{logical:04d}"


def dump_schema(source: Cluster, logical: int) -> str:
    """The moving schema's DDL (tables, indexes, sequence, next_id(), grants), no data."""
    return (f"(cd / && runuser -u postgres -- /usr/lib/postgresql/{source.version}/bin/pg_dump -h {SOCKET_DIR} "
            f"-p {source.port} --schema-only --no-publications --no-subscriptions -n {schema_name(logical)} "
            f"{source.database})")


def publish_sql(logical: int) -> str:
    """On the source: the publication of the schema, readable by the replication login (the
    subscription's initial copy reads the tables as that login)."""
    schema, name = schema_name(logical), move_name(logical)
    return f"""
GRANT USAGE ON SCHEMA {schema} TO {REPLICATION_USER};
GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {REPLICATION_USER};
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = {sql_literal(name)}) THEN
    CREATE PUBLICATION {name} FOR TABLES IN SCHEMA {schema};
  END IF;
END $$;
"""


def drop_slot_sql(logical: int) -> str:
    """On the source: a slot an interrupted subscription left (the next subscription makes its own)."""
    name = sql_literal(move_name(logical))
    return (f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            f"WHERE slot_name = {name} AND NOT active;\n")


def subscribe_sql(source: Cluster, logical: int) -> str:
    """On the target: the subscription, copying the tables then streaming every later change.
    Its connection reads the replication login's password from the postgres passfile, so no
    password lands in pg_subscription."""
    conninfo = (f"host={source.address} port={source.port} dbname={source.database} "
                f"user={REPLICATION_USER} passfile={PASSFILE}")
    name = move_name(logical)
    return f"CREATE SUBSCRIPTION {name} CONNECTION {sql_literal(conninfo)} PUBLICATION {name};\n"


def has_subscription(logical: int) -> str:
    return f"SELECT count(*) = 1 FROM pg_subscription WHERE subname = {sql_literal(move_name(logical))}"


def has_schema(logical: int) -> str:
    return f"SELECT count(*) = 1 FROM pg_namespace WHERE nspname = {sql_literal(schema_name(logical))}"


def copied(logical: int) -> str:
    """On the target: true once every table's initial copy is done and it streams (state r)."""
    return (f"SELECT count(*) > 0 AND bool_and(r.srsubstate = 'r') FROM pg_subscription_rel r "
            f"JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = {sql_literal(move_name(logical))}")


def freeze_sql(logical: int, lock_timeout_s: int = 10) -> str:
    """On the source: stop the app's writes to this one schema, then wait for the writes already
    past their privilege check (they hold ROW EXCLUSIVE locks, which SHARE waits for). A write
    that starts later is refused ("permission denied": the app answers 503 + Retry-After)."""
    schema = schema_name(logical)
    return f"""
REVOKE {WRITES} ON ALL TABLES IN SCHEMA {schema} FROM {APP_USER};
SET lock_timeout = '{lock_timeout_s}s';
BEGIN;
DO $$ DECLARE t record; BEGIN
  FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = {sql_literal(schema)} LOOP
    EXECUTE format('LOCK TABLE %I.%I IN SHARE MODE', {sql_literal(schema)}, t.tablename);
  END LOOP;
END $$;
COMMIT;
"""


def thaw_sql(logical: int) -> str:
    """On the source: give the app its writes back (a rolled-back or interrupted cut-over)."""
    schema = schema_name(logical)
    return f"GRANT {WRITES} ON ALL TABLES IN SCHEMA {schema} TO {APP_USER};\n"


def tables(logical: int) -> str:
    """The schema's tables, comma-separated, sorted."""
    return (f"SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
            f"WHERE schemaname = {sql_literal(schema_name(logical))}")


def checksums(logical: int, table_names: list[str]) -> str:
    """Per table: `table:rows:sum of row hashes`, comma-separated. Equal on both sides (the
    source frozen) means the target holds every change."""
    schema = schema_name(logical)
    parts = [f"SELECT {sql_literal(t)} || ':' || count(*) || ':' || coalesce(sum(hashtextextended(x::text, 0)), 0) "
             f"AS c FROM {schema}.{t} x" for t in table_names]
    return f"SELECT string_agg(c, ',' ORDER BY c) FROM ({' UNION ALL '.join(parts)}) sums"


def last_id_sql(logical: int) -> str:
    return f"SELECT last_value FROM {schema_name(logical)}.table_id_seq"


def advance_sequence_sql(logical: int, last_value: int) -> str:
    """On the target: the id sequence continues past the source's last value (never back)."""
    seq = f"{schema_name(logical)}.table_id_seq"
    return f"SELECT setval({sql_literal(seq)}, greatest({last_value}, (SELECT last_value FROM {seq})));\n"


def unsubscribe_sql(logical: int) -> str:
    """On the target: the subscription goes (and with it the slot on the source)."""
    return f"DROP SUBSCRIPTION IF EXISTS {move_name(logical)};\n"


def moved_in_sql(logical: int) -> str:
    """On the target after the flip: the replication login no longer reads the schema."""
    schema = schema_name(logical)
    return (f"REVOKE SELECT ON ALL TABLES IN SCHEMA {schema} FROM {REPLICATION_USER};\n"
            f"REVOKE USAGE ON SCHEMA {schema} FROM {REPLICATION_USER};\n")


def unpublish_sql(logical: int, drop_schema: bool) -> str:
    """On the source: the publication and the replication login's grants go; after the flip the
    old copy of the schema goes too."""
    schema = schema_name(logical)
    lines = [f"DROP PUBLICATION IF EXISTS {move_name(logical)};"]
    if drop_schema:
        lines.append(f"DROP SCHEMA IF EXISTS {schema} CASCADE;")
    else:
        lines += [f"REVOKE SELECT ON ALL TABLES IN SCHEMA {schema} FROM {REPLICATION_USER};",
                  f"REVOKE USAGE ON SCHEMA {schema} FROM {REPLICATION_USER};"]
    return "\n".join(lines) + "\n"


def drop_copy_sql(logical: int) -> str:
    """On the target: a partial copy goes (rolled back, or redone from scratch on resume)."""
    return f"DROP SCHEMA IF EXISTS {schema_name(logical)} CASCADE;\n"
