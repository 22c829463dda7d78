"""`--dry-run` of the day-2 commands on the one-box: the steps, from the stack's own topology,
and nothing run (no SSH: the one-box's sshd is not even started)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_redis_failover_dry_run_follows_the_stored_redis_primary_and_changes_nothing(tmp_path, stored):
    from roles.redis.primary import save_primary

    done = _ops(tmp_path, "redis-failover", "--dry-run")
    lines = _steps(done)
    assert lines[:3] == ["fence redis-primary on onebox (its machine powered off through the provider where there is "
                         "one, else its redis stopped)", "promote redis-replica1 (REPLICAOF NO ONE)",
                         "store the new Redis primary"]
    assert lines[-1] == "drop every feed on the new primary (each rebuilt from the shards when next read)"
    save_primary(load_stack_config("onebox"), "onebox", 1)
    assert _steps(_ops(tmp_path, "redis-failover", "--dry-run"))[1] == "promote redis-primary (REPLICAOF NO ONE)"
    assert not (stored / "onebox" / "audit.log").exists()
    assert {p.name for p in (stored / "onebox").iterdir()} == {"redis.json"}  # only what the test stored


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


# --- every command that changes a stack has a dry run -------------------------------------------

# The commands that only read (each prints what it read; `ops status` has its own read-only test).
READ_ONLY = {"check", "alerts", "audit", "status", "plan", "backups"}


def leaf_commands() -> dict[str, object]:
    """Every `ops` command by its full name ("shard move"), as the CLI registers them."""
    import typer

    from ops.cli import app

    found: dict[str, object] = {}

    def walk(command, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        else:
            found[" ".join(path)] = command

    walk(typer.main.get_command(app), ())
    return found


def test_every_command_that_changes_a_stack_has_a_dry_run_or_a_check():
    commands = leaf_commands()
    assert READ_ONLY <= set(commands)  # a renamed read-only command is not silently exempt
    without = sorted(name for name, command in commands.items() if name not in READ_ONLY and not {
        opt for p in command.params for opt in p.opts} & {"--dry-run", "--check"})
    assert without == []


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def _steps(done: subprocess.CompletedProcess) -> list[str]:
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "would:", done.stdout
    return [line.strip().split(". ", 1)[1] for line in lines[1:]]


@pytest.fixture
def stored(tmp_path, monkeypatch) -> Path:
    """The one-box's state dir in `tmp_path` (what `_ops` uses), for a test to store records in."""
    monkeypatch.setenv("PHOTOSTACK_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def test_shard_add_and_remove_dry_runs_follow_the_stored_map_and_change_nothing(tmp_path, stored):
    from infra.shardstore import shard_map_store
    from infra.sharding import ShardMap

    config = load_stack_config("onebox")
    store = shard_map_store(config, "onebox")
    store.save(ShardMap((0,) * config.postgres.logical_shards, 1))  # the config states one more
    before = _snapshot(stored)
    added = _steps(_ops(tmp_path, "shard", "add", "--dry-run"))
    assert added[0] == "store the map with physical shard 1"
    assert added[1].startswith("converge physical shard 1's clusters and pgbouncer databases on onebox")
    assert _snapshot(stored) == before
    store.save(ShardMap.initial(config).grown())  # three stored, the last empty: the config removes it
    before = _snapshot(stored)
    removed = _steps(_ops(tmp_path, "shard", "remove", "--dry-run"))
    assert removed[0] == "store the map without physical shard 2 and write it to onebox"
    assert removed[1:3] == ["drop cluster shard2r1 on onebox", "drop cluster shard2 on onebox"]  # replicas first
    assert removed[3].startswith("converge pgbouncer and monitoring")
    assert _snapshot(stored) == before
    store.save(ShardMap.initial(config).grown().moved(0, 2))  # the last one holds logical shard 0
    refused = _ops(tmp_path, "shard", "remove", "--dry-run")
    assert refused.returncode == 2 and "physical shard 2 still holds 1 logical shards (0)" in refused.stderr


def test_shard_move_dry_runs_name_each_step_and_resume_rollback_follow_the_record(tmp_path, stored):
    from infra.records import record
    from infra.shardstore import shard_map_store
    from infra.sharding import ShardMap

    config = load_stack_config("onebox")
    moving = _steps(_ops(tmp_path, "shard", "move", "--logical", "3,5", "--to", "1", "--dry-run"))
    assert moving[0] == "take the stack's lock and record the moves of logical shards 3, 5"
    assert [s.split(" (")[0] for s in moving[1:5]] == [
        "copy logical shard 3 to shard1", "freeze logical shard 3's writes on shard0, wait until shard1 has every "
        "change, advance its id sequence", "flip the map: logical shard 3 → physical shard 1; write it to onebox",
        "drop logical shard 3's old copy on shard0"]
    assert len(moving) == 9
    assert not stored.joinpath("onebox", "moves.json").exists()
    # Logical shard 3 flipped already, 5 waits: resume only cleans 3 up, then moves 5.
    shard_map_store(config, "onebox").save(ShardMap.initial(config).moved(3, 1))
    record(config, "onebox", "moves").save({"moves": [[3, 0, 1], [5, 0, 1]], "step": "flipped"})
    before = _snapshot(stored)
    resumed = _steps(_ops(tmp_path, "shard", "move", "--resume", "--dry-run"))
    assert resumed[:2] == ["take the stack's lock", "drop logical shard 3's old copy on shard0"]
    assert resumed[2].startswith("copy logical shard 5 to shard1") and len(resumed) == 6
    rolled = _steps(_ops(tmp_path, "shard", "move", "--rollback", "--dry-run"))
    assert rolled == ["take the stack's lock",
                      "logical shard 3 is already on physical shard 1: drop its old copy on shard0",
                      "forget the moves not started: 5", "clear the moves record"]
    assert _snapshot(stored) == before
    bad = _ops(tmp_path, "shard", "move", "--logical", "7", "--to", "1", "--dry-run")
    assert bad.returncode == 2 and "a move is in progress (logical shard 3" in bad.stderr


def test_backup_restore_and_drill_dry_runs_start_from_the_acting_primary(tmp_path, stored):
    from infra.shardstore import Primaries, primaries_store

    config = load_stack_config("onebox")
    primaries_store(config, "onebox").save(Primaries().failed_over(1, 1))  # shard1r1 took over
    before = _snapshot(stored)
    assert _steps(_ops(tmp_path, "backup", "--shard", "1", "--type", "full", "--dry-run")) == [
        "full backup of shard1 from shard1r1 on onebox into the backup repository"]
    side = _steps(_ops(tmp_path, "restore", "--shard", "1", "--to", "2026-11-30 10:00", "--into", "side1", "--dry-run"))
    assert side[0].startswith("check the archive reaches time 2026-11-30 10:00:00")
    assert side[1] == "restore shard1 into a new cluster side1 on onebox (socket only; the shard is untouched)"
    in_place = _steps(_ops(tmp_path, "restore", "--shard", "0", "--latest", "--dry-run"))
    assert "take shard0r1 out of service (synchronous standby off, pgbouncer repointed, fenced)" in in_place
    assert in_place[-1] == "rebuild shard0r1 from shard0 and put them back in service"
    drill = _steps(_ops(tmp_path, "restore-drill", "--shard", "1", "--dry-run"))
    assert drill[0].startswith("restore drill of shard1 on onebox") and drill[0].endswith("recorded in shard1r1")
    assert _snapshot(stored) == before
    bad = _ops(tmp_path, "backup", "--shard", "0", "--type", "weekly", "--dry-run")
    assert bad.returncode == 2 and "--type weekly: one of full, diff, incr" in bad.stderr


def test_up_down_secret_and_alerting_dry_runs_change_nothing(tmp_path, stored):
    up = _steps(_ops(tmp_path, "up", "--dry-run"))
    assert up[0].startswith("start the one-box sshd on 127.0.0.1:") and up[1].startswith("converge onebox: app, ")
    assert _steps(_ops(tmp_path, "down", "--dry-run")) == ["stop the services of onebox, last role first (data is kept)"]
    secret = _steps(_ops(tmp_path, "secret", "set", "pagerdutyRoutingKey", "--dry-run"))
    assert secret == [f"read pagerdutyRoutingKey from stdin and store it in {stored / 'onebox' / 'secrets.json'} (owner-only)"]
    assert _steps(_ops(tmp_path, "silence", "--for", "30m", "--host", "onebox", "--dry-run")) == [
        "add a silence host=onebox alert=* for 30m where the alert hooks read it"]
    assert _steps(_ops(tmp_path, "alert-flush", "--dry-run")) == [
        "send 0 spooled event(s) to PagerDuty, oldest first, from this machine"]
    refused = _ops(tmp_path, "-s", "prod", "up", "--dry-run")
    assert refused.returncode == 2 and "`pulumi up` provisions it" in refused.stderr
    assert [p for p in stored.rglob("*") if not p.is_dir()] == [], "a dry run wrote to the state dir"
