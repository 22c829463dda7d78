"""The data tier's pure parts: verifiers, tuning, pgbouncer entries, the shard map store, the
engine additions. No servers needed (the SSM store runs against a local moto server)."""

from __future__ import annotations

import re
import subprocess

import boto3
import pytest

from infra.config import ConfigError, parse_stack_config
from infra.targets.aws import SsmShardMapStore
from infra.targets.onebox import FileShardMapStore
from infra.sharding import ShardMap
from roles.engine.resources import DesiredState, File, Service
from roles.pgbouncer.role import databases
from roles.postgres.auth import scram_verifier
from roles.postgres.cluster import Cluster
from roles.postgres.tuning import memory_settings

VERIFIER = re.compile(r"^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$")


def test_scram_verifier_is_stable_per_password_and_unique_per_user_and_stack():
    a = scram_verifier("photostack", "secret", "stack-a-salt-key")
    assert VERIFIER.match(a)
    assert a == scram_verifier("photostack", "secret", "stack-a-salt-key")  # converge sees no change
    assert a != scram_verifier("photostack", "other", "stack-a-salt-key")  # a new password is a change
    salt = a.split("$")[1]
    assert salt != scram_verifier("replicator", "secret", "stack-a-salt-key").split("$")[1]  # own salt per user
    # Another stack with the same login and password: another salt, so another verifier (no table
    # computed for one deployment's well-known login name fits the next).
    assert salt != scram_verifier("photostack", "secret", "stack-b-salt-key").split("$")[1]


def test_scram_verifier_is_what_postgres_itself_accepts_for_the_password():
    """Checked against the real server: a login with the password works with our verifier."""
    import shutil
    import subprocess

    import psycopg

    if not shutil.which("pg_ctlcluster"):
        pytest.skip("postgresql not installed")
    from tests.app_services import free_ports  # a throwaway cluster, as the app tests use

    port = free_ports(1)[0]
    name = f"scramtest{port}"
    subprocess.run(["pg_createcluster", "15", name, "--port", str(port), "--", "--auth-host=scram-sha-256"],
                   check=True, capture_output=True)
    try:
        subprocess.run(["pg_ctlcluster", "15", name, "start"], check=True, capture_output=True)
        verifier = scram_verifier("scramtest", "correct horse", "some-stack-key")
        sql = f"CREATE ROLE scramtest LOGIN PASSWORD '{verifier}'"
        subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-p", str(port), "-c", sql], check=True,
                       capture_output=True, cwd="/")
        with psycopg.connect(host="127.0.0.1", port=port, dbname="postgres", user="scramtest",
                             password="correct horse") as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("scramtest",)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host="127.0.0.1", port=port, dbname="postgres", user="scramtest", password="wrong")
    finally:
        subprocess.run(["pg_dropcluster", "15", name, "--stop"], capture_output=True)


def test_memory_settings_split_the_share_among_clusters():
    one = memory_settings(32768, 1, 0.9, 200)
    assert one["shared_buffers"] == "7372MB" and one["effective_cache_size"] == "22118MB"
    four = memory_settings(24000, 4, 0.25, 200)
    assert four["shared_buffers"] == "375MB" and four["maintenance_work_mem"] == "75MB"
    assert memory_settings(512, 8, 0.25, 200)["shared_buffers"] == "64MB"  # floor of 256 MB per cluster


def test_pgbouncer_entries_per_primary_and_replicas():
    clusters = [Cluster(15, 0, 0, "10.0.0.1", 5432), Cluster(15, 0, 1, "10.0.1.1", 5432),
                Cluster(15, 0, 2, "10.0.2.1", 5432), Cluster(15, 1, 0, "10.0.0.2", 5432)]
    entries = {(d.name, d.host, d.dbname) for d in databases(clusters)}
    assert entries == {("shard0", "10.0.0.1", "shard0"), ("shard0_ro", "10.0.1.1,10.0.2.1", "shard0"),
                       ("shard1", "10.0.0.2", "shard1"), ("shard1_ro", "10.0.0.2", "shard1")}  # no replica: the primary
    onebox = databases([Cluster(15, 0, 0, "127.0.0.1", 5433), Cluster(15, 0, 1, "127.0.0.1", 5434)])
    assert [(d.name, d.port) for d in onebox] == [("shard0", 5433), ("shard0_ro", 5434)]


def _config(logical: int = 6144):
    return parse_stack_config({"config": {
        "photostack:target": "onebox", "photostack:domain": "x.example", "photostack:environment": "t",
        "photostack:fleets": {k: {"count": 1} for k in ("nginx", "app", "worker")},
        "photostack:postgres": {"logicalShards": logical, "physicalShards": 12},
    }})


def test_file_store_keeps_moves(tmp_path):
    store = FileShardMapStore(tmp_path / "shardmap.json")
    config = _config(96)
    initial = store.load_or_create(config)
    store.save(initial.moved(0, 11))
    assert store.load_or_create(config).physical_of(0) == 11


def test_ssm_store_fits_a_prod_map_and_keeps_moves(moto_account):
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=moto_account,
                       aws_access_key_id="test", aws_secret_access_key="test")
    store = SsmShardMapStore("prod", "us-east-1", client=ssm)
    config = _config()
    initial = store.load_or_create(config)
    assert initial == ShardMap.initial(config)
    assert len(ssm.get_parameter(Name="/photostack/prod/shardmap")["Parameter"]["Value"]) < 4096
    store.save(initial.moved(5, 3))
    assert store.load_or_create(config).physical_of(5) == 3
    with pytest.raises(ConfigError, match="can never change"):
        store.load_or_create(_config(6000))


def test_identical_resources_from_two_roles_collapse():
    state = DesiredState(resources=[File("/etc/photostack/shardmap.json", "{}\n")])
    state.extend(DesiredState(resources=[File("/etc/photostack/shardmap.json", "{}\n"), File("/etc/other", "")]))
    assert [r.path for r in state.resources] == ["/etc/photostack/shardmap.json", "/etc/other"]


def test_daemon_service_without_systemd_uses_its_pidfile(tmp_path):
    pidfile = tmp_path / "sleep.pid"
    service = Service.daemon("sleeper", "sleeper.service", f"sleep 30 & echo $! > {pidfile}", str(pidfile))
    run = lambda command: subprocess.run(["bash", "-c", command], timeout=10).returncode  # noqa: E731
    assert run(service.status) != 0
    assert run(service.start) == 0 and run(service.status) == 0
    assert run(service.stop) == 0 and run(service.status) != 0 and not pidfile.exists()
