"""The data tier roles converge idempotently, show drift, and repoint pgbouncer without a restart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.onebox

ROLES = ["postgres", "pgbouncer", "redis", "memcached", "rabbitmq"]
POSTGRESQL_CONF = Path("/etc/postgresql/15/shard0/postgresql.conf")
PGBOUNCER_INI = Path("/etc/pgbouncer/pgbouncer.ini")


def ops(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "ops", *args], capture_output=True, text=True, timeout=600, env=env)


def converge(*extra: str, roles: list[str] = ROLES) -> subprocess.CompletedProcess:
    return ops("converge", *extra, *[arg for role in roles for arg in ("--role", role)])


def test_second_converge_changes_nothing(onebox):
    done = converge()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "changed=0 failed=0" in done.stdout, done.stdout


def test_check_shows_the_diff_of_a_hand_edited_postgresql_conf(onebox):
    original = POSTGRESQL_CONF.read_text()
    POSTGRESQL_CONF.write_text(original.replace("log_checkpoints = on", "log_checkpoints = off  # hand edit"))
    try:
        check = converge("--check", "--diff", roles=["postgres"])
        assert check.returncode == 0, check.stdout + check.stderr
        assert "-log_checkpoints = off  # hand edit" in check.stdout
        assert "+log_checkpoints = on" in check.stdout
        assert POSTGRESQL_CONF.read_text() != original  # --check changed nothing
    finally:
        fixed = converge(roles=["postgres"])
    assert fixed.returncode == 0 and "reload postgres shard0" in fixed.stdout, fixed.stdout
    assert POSTGRESQL_CONF.read_text() == original


def test_check_never_shows_secrets(onebox):
    userlist = Path("/etc/pgbouncer/userlist.txt")
    original = userlist.read_text()
    userlist.write_text(original + '"intruder" "x"\n')
    try:
        check = converge("--check", "--diff", roles=["pgbouncer", "redis"])
    finally:
        converge(roles=["pgbouncer"])
    assert "userlist.txt" in check.stdout and "content hidden" in check.stdout
    for name in ("dbPassword", "pgbouncerAdminPassword", "redisPassword"):
        assert onebox.secret(name) not in check.stdout + check.stderr
    assert "SCRAM-SHA-256$" not in check.stdout


def test_repointing_a_shard_is_a_reload_that_keeps_clients_connected(datatier):
    pid_before = Path("/var/run/postgresql/pgbouncer.pid").read_text()
    original = PGBOUNCER_INI.read_text()
    primary, standby = datatier.primary_port(0), datatier.replica_port(0)
    with datatier.pgbouncer("shard0") as client:
        assert client.execute("SELECT inet_server_port()").fetchone()[0] == primary
        # Stand-in for a failover: point shard0 at another server, then reload.
        PGBOUNCER_INI.write_text(original.replace(f"shard0 = host=127.0.0.1 port={primary}", f"shard0 = host=127.0.0.1 port={standby}"))
        try:
            with datatier.pgbouncer("pgbouncer", user="pgbouncer_admin", secret="pgbouncerAdminPassword") as admin:
                admin.execute("RELOAD")
            assert client.execute("SELECT inet_server_port()").fetchone()[0] == standby
        finally:
            restored = converge(roles=["pgbouncer"])
        assert "handler onebox: reload pgbouncer" in restored.stdout, restored.stdout
        # The same client connection, repointed back by the converge's reload.
        assert client.execute("SELECT inet_server_port()").fetchone()[0] == primary
    assert Path("/var/run/postgresql/pgbouncer.pid").read_text() == pid_before
