"""Drill: a replica rebuild whose source is a standby keeps the data it would have replaced.

A primaries record that disagrees with the hosts (a stale one-box state dir, a hand-edited
record) makes the converge rebuild the real primary "as a replica" of a standby. The rebuild's
base backup says where it was taken (`BACKUP FROM:` in its label); taken from a standby, the old
data dir stays as it was and the rebuild fails naming why."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ops.failover import members
from roles.postgres import commands

pytestmark = [pytest.mark.onebox, pytest.mark.drill]


def sh(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)


def test_a_rebuild_from_a_standby_leaves_the_primary_data_as_it_was(converged):
    primary, standby = (member.cluster for member in members(converged, 0)[:2])
    data = Path(primary.data_dir)
    identity = sh(f"/usr/lib/postgresql/{primary.version}/bin/pg_controldata {data} | grep 'system identifier'").stdout
    assert identity and not (data / "standby.signal").exists()

    rebuilt = sh(commands.build_replica(primary, standby))  # the record would name the standby primary
    try:
        assert rebuilt.returncode != 0
        assert f"came from {standby.name}" in rebuilt.stderr and "a standby" in rebuilt.stderr
        slots = sh(commands.psql_value(standby, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = "
                                                f"{commands.sql_literal(primary.slot)}"))
        assert slots.stdout.strip() == "0", slots  # the backup's slot on the standby went with it
        assert (data / "PG_VERSION").exists() and not (data / "standby.signal").exists()
        assert not Path(f"{data}.partial").exists()
        after = sh(f"/usr/lib/postgresql/{primary.version}/bin/pg_controldata {data} | grep 'system identifier'").stdout
        assert after == identity
    finally:
        sh(commands.ctl(primary, "start"))
    assert sh(commands.psql_is_true(primary, "SELECT NOT pg_is_in_recovery()")).returncode == 0
