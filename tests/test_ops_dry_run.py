"""`--dry-run` of the day-2 commands on the one-box: the steps, from the stack's own topology,
and nothing run (no SSH: the one-box's sshd is not even started)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infra.config import load_stack_config
from infra.topology import nodes

REPO = Path(__file__).resolve().parent.parent


def _ops(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOSTACK_")}
    env.update(PHOTOSTACK_STATE_DIR=str(tmp_path / "state"), PYTHONPATH=str(REPO), COLUMNS="300")
    return subprocess.run([sys.executable, "-m", "ops", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)


def test_cache_flush_dry_run_names_every_memcached_node_and_flushes_none(tmp_path):
    config = load_stack_config("onebox")
    expected = [n.name for n in nodes(config) if n.role == "memcached"]
    done = _ops(tmp_path, "cache", "flush", "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "would:" and [line.split()[2] for line in lines[1:]] == expected
    # Nothing ran: no audit record, no lock, no sshd state for the one-box.
    assert not (tmp_path / "state" / "onebox" / "audit.log").exists()


def test_queue_drain_and_requeue_dry_run_say_where_and_how_many(tmp_path):
    drain = _ops(tmp_path, "queue", "drain", "--queue", "thumbnails", "--limit", "50", "--dry-run")
    requeue = _ops(tmp_path, "queue", "requeue", "--queue", "thumbnails", "--dry-run")
    assert drain.returncode == requeue.returncode == 0, drain.stderr + requeue.stderr
    assert drain.stdout.splitlines()[1].strip() == (
        "1. on onebox: move up to 50 ready message(s) from thumbnails to thumbnails.parked, "
        "each confirmed by the broker before it is acked at the source")
    assert "from thumbnails.parked to thumbnails," in requeue.stdout
    assert not (tmp_path / "state" / "onebox" / "audit.log").exists()


def test_failover_dry_run_names_the_primary_to_fence_and_the_replica_to_promote(tmp_path):
    done = _ops(tmp_path, "failover", "--shard", "1", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert [line.strip() for line in done.stdout.splitlines()] == [
        "would:", "1. fence shard1 on onebox (its machine powered off through the provider where there is one, "
        "else the cluster stopped and its data dir moved aside)", "2. promote shard1r1", "3. store the new primary of shard 1",
        "4. repoint pgbouncer on onebox", "5. warm the new primary's page cache", "6. converge monitoring",
    ]
    assert not (tmp_path / "state" / "onebox" / "audit.log").exists()
    bad = _ops(tmp_path, "failover", "--shard", "9", "--dry-run")
    assert bad.returncode == 2 and "--shard 9: no such physical shard" in bad.stdout + bad.stderr


def test_deploy_dry_run_names_the_release_the_hosts_and_each_nodes_roll(tmp_path):
    from roles.app.release import build_release

    version = build_release().version
    config = load_stack_config("onebox")
    apps = [n.name for n in nodes(config) if n.role == "app"]
    workers = [n.name for n in nodes(config) if n.role == "worker"]
    done = _ops(tmp_path, "deploy", "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    assert lines[:3] == ["would:", f"1. build release {version} from the working tree",
                         f"2. ship {version} to onebox (hosts that have it are untouched)"]
    rolled = [line.split(". ", 1)[1].split(":")[0].split(" on ")[0] for line in lines[3:-1]]
    assert rolled == apps + workers  # app nodes one at a time, then the workers
    assert all("out of rotation" in line for line in lines[3:3 + len(apps)])
    assert not (tmp_path / "state" / "onebox" / "audit.log").exists()


def test_rollback_dry_run_without_a_previous_release_says_so(tmp_path):
    done = _ops(tmp_path, "rollback", "--dry-run")
    assert done.returncode == 2
    assert "no previous release recorded" in done.stdout + done.stderr


def test_rebuild_replica_dry_run_follows_the_stored_primaries(tmp_path):
    healthy = _ops(tmp_path, "rebuild-replica", "--shard", "0", "--dry-run")
    assert healthy.returncode == 2 and "shard 0: no member waits for a rebuild (primary is shard0)" in healthy.stderr + healthy.stdout
    named = _ops(tmp_path, "rebuild-replica", "--shard", "0", "--member", "shard0r1", "--dry-run")
    assert named.returncode == 0, named.stderr
    assert [line.strip() for line in named.stdout.splitlines()][1:] == [
        "1. take shard0r1 out of service (synchronous standby off, pgbouncer repointed, fenced)",
        "2. base backup shard0r1 from shard0", "3. wait until shard0r1 streams", "4. back in service",
        "5. synchronous standby on", "6. repoint pgbouncer", "7. converge the rest (other members, monitoring)"]
