-- The logical shard itself: its schema, its id generator next_id() (infra.sharding.next_id_sql)
-- and the table recording which migrations it has applied.
{next_id}
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
