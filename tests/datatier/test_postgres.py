"""Sharded Postgres on the one-box, over real connections: auth, replication, shard map."""

from __future__ import annotations

import time

import psycopg
import pytest

from infra.sharding import physical_db, schema_name

pytestmark = pytest.mark.onebox


def test_every_shard_reachable_through_pgbouncer(datatier):
    for shard in range(datatier.shard_map.physical_shards):
        with datatier.pgbouncer(physical_db(shard)) as conn:
            port, recovery = conn.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone()
            assert (port, recovery) == (datatier.primary_port(shard), False)
        with datatier.pgbouncer(physical_db(shard, replica=True)) as conn:
            port, recovery = conn.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone()
            assert (port, recovery) == (datatier.replica_port(shard), True)


@pytest.mark.parametrize("password", ["wrong-password", ""])
def test_postgres_and_pgbouncer_refuse_bad_passwords(datatier, password):
    for port in (datatier.primary_port(0), datatier.replica_port(0), datatier.box.pgbouncer_port):
        with pytest.raises(psycopg.OperationalError, match="authentication failed|password"):
            datatier.connect(port, "shard0", password=password)


def test_pgbouncer_admin_console_needs_its_password(datatier):
    admin = {"user": "pgbouncer_admin", "secret": "pgbouncerAdminPassword"}
    with datatier.pgbouncer("pgbouncer", **admin) as conn:
        databases = {row[0] for row in conn.execute("SHOW DATABASES").fetchall()}
    assert {"shard0", "shard0_ro", "shard1", "shard1_ro"} <= databases
    with pytest.raises(psycopg.OperationalError):
        datatier.pgbouncer("pgbouncer", password="wrong", **admin)


def test_no_trust_in_any_pg_hba(datatier):
    from pathlib import Path

    files = sorted(Path("/etc/postgresql/15").glob("shard*/pg_hba.conf"))
    assert len(files) == datatier.shard_map.physical_shards * 2
    for path in files:
        rules = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        assert rules and all(rule[-1] in ("peer", "scram-sha-256") for rule in rules), path
        assert all(rule[-1] == "scram-sha-256" for rule in rules if rule[0] == "host"), path


def test_row_written_on_primary_is_on_replica_within_a_second(datatier):
    marker = f"repl-{time.time_ns()}"
    with datatier.connect(datatier.primary_port(0), "shard0") as primary, \
            datatier.connect(datatier.replica_port(0), "shard0") as replica:
        primary.execute("CREATE TABLE IF NOT EXISTS public.replication_probe (note text PRIMARY KEY)")
        primary.execute("INSERT INTO public.replication_probe VALUES (%s)", (marker,))
        written = time.monotonic()
        while time.monotonic() - written < 1.0:
            if replica.execute("SELECT 1 FROM public.replication_probe WHERE note = %s", (marker,)).fetchone():
                break
            time.sleep(0.01)
        else:
            pytest.fail("row not on the replica after 1 s")
        primary.execute("DELETE FROM public.replication_probe WHERE note = %s", (marker,))


def test_replica_is_in_recovery_and_refuses_writes(datatier):
    with datatier.connect(datatier.replica_port(1), "shard1") as replica:
        assert replica.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            replica.execute("CREATE TABLE should_fail (id int)")


def test_replicas_stream_synchronously_from_their_slots(datatier):
    for shard in range(datatier.shard_map.physical_shards):
        with datatier.connect(datatier.primary_port(shard), f"shard{shard}", user="pgbouncer_admin",
                              secret="pgbouncerAdminPassword") as conn:
            rows = conn.execute(
                "SELECT r.application_name, r.state, r.sync_state, s.active FROM pg_stat_replication r "
                "JOIN pg_replication_slots s ON s.active_pid = r.pid"
            ).fetchall()
        assert rows == [(datatier.replica_name(shard), "streaming", "quorum", True)]


def test_every_logical_shard_lives_on_exactly_one_primary(datatier):
    found: dict[str, list[int]] = {}
    for shard in range(datatier.shard_map.physical_shards):
        with datatier.connect(datatier.primary_port(shard), f"shard{shard}") as conn:
            for (name,) in conn.execute(
                "SELECT n.nspname FROM pg_namespace n JOIN pg_proc p ON p.pronamespace = n.oid "
                "WHERE p.proname = 'next_id' AND n.nspname LIKE 'shard\\_%'"
            ):
                found.setdefault(name, []).append(shard)
    shard_map = datatier.shard_map
    assert found == {schema_name(n): [shard_map.physical_of(n)] for n in range(shard_map.logical_shards)}


def test_host_copy_of_the_shard_map_is_the_stored_one(datatier):
    from infra.shardstore import stored_shard_map

    # Read now: a shard move earlier in the session (versioned map) may have changed it.
    stored = stored_shard_map(datatier.stack.config, datatier.stack.name)
    assert open("/etc/photostack/shardmap.json").read().strip() == stored.to_json()
