"""Backups without a server: the stack config keys, the commands built for pgBackRest, the
parsing of its `info`, restore targets and side-cluster names, the postgres role's archive
settings and pgBackRest config on the one-box."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from infra.backup_naming import backup_bucket_name
from infra.config import ConfigError, load_stack_config, parse_stack_config
from infra.inventory import onebox_hosts
from ops import backups as bk
from roles.context import RoleContext
from roles.converge import host_state
from roles.engine.resources import File
from roles.postgres import pgbackrest
from roles.postgres.cluster import Cluster

ROOT = Path(__file__).resolve().parent.parent
REPLICA = Cluster(15, 1, 1, "127.0.0.1", 5436)


def _onebox(**backups) -> dict:
    document = yaml.safe_load((ROOT / "Pulumi.onebox.yaml").read_text())
    document = copy.deepcopy(document)
    document["config"]["photostack:backups"] = backups
    return document


@pytest.mark.parametrize("backups,key,reason", [
    ({"archiveTimeoutS": 300}, "photostack:backups.archiveTimeoutS", "less than or equal to 60"),
    ({"fullSchedule": "every sunday"}, "photostack:backups.fullSchedule", "cron"),
    ({"retentionFull": 0}, "photostack:backups.retentionFull", "greater than or equal"),
    ({"keepForever": True}, "photostack:backups.keepForever", "unknown key"),
])
def test_bad_backups_config_is_one_line_naming_the_key(backups, key, reason):
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(_onebox(**backups))
    (line,) = [p for p in caught.value.problems if p.startswith(key)]
    assert reason in line


def test_backups_config_defaults_and_overrides():
    config = parse_stack_config(_onebox(retentionFull=4, diffSchedule="15 2 * * 1-6"))
    assert config.backups.retention_full == 4 and config.backups.diff_schedule == "15 2 * * 1-6"
    assert config.backups.archive_timeout_s == 60  # the RPO goal


def test_bucket_name_is_a_valid_s3_name_for_every_stack():
    for stack in ("prod", "staging"):
        name = backup_bucket_name(load_stack_config(stack), stack)
        assert 3 <= len(name) <= 63 and name == name.lower() and not name.startswith("-")
        assert stack in name


def test_archive_command_pushes_from_the_members_own_data_dir():
    assert pgbackrest.archive_command(REPLICA) == (
        "pgbackrest --stanza=shard1 --pg1-path=/var/lib/postgresql/15/shard1r1 archive-push %p")


def test_restore_command_per_target():
    to_time = pgbackrest.restore(REPLICA, "/d", "2026-11-30 14:01:30.000000+00", "time", delta=True, timeline=4)
    assert "--type=time '--target=2026-11-30 14:01:30.000000+00' --target-action=promote" in to_time
    assert "--pg1-path=/d" in to_time and "--delta restore" in to_time and "--target-timeline=4" in to_time
    latest = pgbackrest.restore(REPLICA, "/d", None, "latest", delta=False)
    assert "--type" not in latest and "--delta" not in latest and latest.endswith("restore)")
    assert "--target-timeline=latest" in latest  # no primary to ask


def test_finished_wal_push_skips_other_timelines_and_unfinished_segments(tmp_path):
    """The push loop, run for real by sh over a fake pg_wal: a stand-in pgbackrest records what
    it was asked to push (the newest `at_most` finished segments of the receiving timeline); one
    segment already in the archive with another checksum is fine."""
    replica = Cluster(15, 1, 1, "127.0.0.1", 5436)
    data = tmp_path / "data"
    (data / "pg_wal").mkdir(parents=True)
    for name in ("00000001000000000000000A", "00000002000000000000000B", "00000002000000000000000C",
                 "00000002000000000000000D", "00000002000000000000000E", "00000002.history"):
        (data / "pg_wal" / name).write_text("x")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pushed = tmp_path / "pushed"
    (bin_dir / "runuser").write_text('#!/bin/sh\nshift 3\nexec "$@"\n')
    (bin_dir / "pgbackrest").write_text(
        f'#!/bin/sh\nfor a; do last=$a; done\necho "${{last##*/}}" >> {pushed}\n'
        'case "$last" in *0C) echo "ERROR: [045]: WAL file already exists in the repo1 archive with a different checksum"; exit 45;; esac\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    script = pgbackrest.push_finished_wal(replica, "echo 00000002000000000000000E", at_most=2).replace(
        replica.data_dir, str(data))
    done = subprocess.run(["sh", "-c", script], env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert pushed.read_text().split() == ["00000002000000000000000C", "00000002000000000000000D"]


INFO = [{
    "name": "shard1", "status": {"code": 0, "message": "ok"},
    "archive": [{"id": "15-1", "min": "000000010000000000000003", "max": "000000020000000000000014"}],
    "backup": [
        {"label": "20261130-150000F", "type": "full", "timestamp": {"start": 1796050000, "stop": 1796050010},
         "info": {"size": 40_000_000, "delta": 40_000_000, "repository": {"size": 7_000_000, "delta": 7_000_000}}},
        {"label": "20261130-150000F_20261130-160000D", "type": "diff",
         "timestamp": {"start": 1796053600, "stop": 1796053603},
         "info": {"size": 41_000_000, "delta": 2_000_000, "repository": {"size": 7_500_000, "delta": 400_000}}},
    ],
}]


def test_info_parsed_per_kind_with_the_archiver():
    shard = bk.parse_info(1, INFO, "1796053700|3\n")
    assert shard.last("full").label == "20261130-150000F"
    assert shard.last("diff").stopped == datetime.fromtimestamp(1796053603, UTC)
    assert shard.newest.repo_size == 400_000
    assert shard.archived_wal == "000000020000000000000014"
    assert shard.archived_at == datetime.fromtimestamp(1796053700, UTC) and shard.archive_failures == 3
    assert bk.age_seconds(shard, now=1796053603 + 90) == 90
    unknown = bk.parse_info(1, [{**INFO[0], "backup": [], "archive": []}], "")
    assert unknown.newest is None and unknown.archived_at is None and bk.age_seconds(unknown) is None


@pytest.mark.parametrize("to,latest,kind,value", [
    ("2026-11-30 14:02", False, "time", "2026-11-30 14:02:00.000000+00"),
    ("2026-11-30T15:02:00+01:00", False, "time", "2026-11-30 14:02:00.000000+00"),
    ("before_migration", False, "name", "before_migration"),
    (None, True, "latest", None),
])
def test_restore_targets(to, latest, kind, value):
    assert bk.parse_target(to, latest) == bk.Target(kind, value)


@pytest.mark.parametrize("to,latest,reason", [
    (None, False, "exactly one"),
    ("2026-11-30 14:02", True, "exactly one"),
    ("drop table; --", False, "neither an ISO time"),
])
def test_bad_restore_targets_are_refused(to, latest, reason):
    with pytest.raises(bk.RestoreRefused, match=reason):
        bk.parse_target(to, latest)


@pytest.mark.parametrize("name", ["shard0", "shard1r1", "Bad", "a b", "x" * 60, "../etc"])
def test_side_cluster_names_that_are_refused(name):
    with pytest.raises(bk.RestoreRefused, match="--into"):
        bk.check_side_name(name)


def test_no_confirmation_without_a_terminal_or_yes():
    with pytest.raises(bk.RestoreRefused, match="pass --yes"):
        bk.confirmed("replace shard 0", yes=False, ask=None)
    with pytest.raises(bk.RestoreRefused, match="not confirmed"):
        bk.confirmed("replace shard 0", yes=False, ask=lambda q: False)
    bk.confirmed("replace shard 0", yes=True, ask=None)


def test_onebox_postgres_role_archives_and_configures_pgbackrest(state_root):
    config = load_stack_config("onebox")
    hosts = tuple(onebox_hosts(config))
    ctx = RoleContext(config, "onebox", hosts[0], hosts, lambda name: f"secret-{name}")
    files = {r.path: r for r in host_state(ctx, {"postgres"}).resources if isinstance(r, File)}
    conf = files[pgbackrest.CONFIG]
    assert (conf.owner, conf.group, conf.mode) == ("root", "postgres", 0o640)
    assert "[shard0]\npg1-path=/var/lib/postgresql/15/shard0\npg1-port=5433" in conf.content
    assert "pg2-path=/var/lib/postgresql/15/shard1r1" in conf.content
    assert "repo1-path=/var/lib/pgbackrest" in conf.content and "repo1-retention-full=2" in conf.content
    pg = files["/etc/postgresql/15/shard1r1/postgresql.conf"].content
    assert "archive_mode = on" in pg and "archive_timeout = 60" in pg
    assert "--pg1-path=/var/lib/postgresql/15/shard1r1 archive-push %p" in pg


def test_a_rebuilt_replica_does_not_inherit_a_restores_recovery_target():
    """pg_basebackup copies the primary's postgresql.auto.conf; after an in-place restore it held
    pgBackRest's recovery target, and the replica stopped there and promoted itself."""
    from roles.postgres import commands

    script = commands.build_replica(REPLICA, Cluster(15, 1, 0, "127.0.0.1", 5435))
    partial = f"{REPLICA.data_dir}.partial"
    assert script.index(f"truncate -s 0 {partial}/postgresql.auto.conf") < script.index(f"mv {partial} {REPLICA.data_dir}")


def test_onebox_schedules_backups_and_drills_with_a_crond_of_its_own(state_root):
    """No systemd on the one-box: BusyBox crond reads a crontab directory holding only these
    jobs, at the stack config's times; converge --check --diff shows the crontab's lines."""
    from roles.engine.resources import Packages, Service
    from roles.postgres import scheduled

    config = load_stack_config("onebox")
    hosts = tuple(onebox_hosts(config))
    ctx = RoleContext(config, "onebox", hosts[0], hosts, lambda name: f"secret-{name}")
    state = host_state(ctx, {"postgres"})
    files = {r.path: r for r in state.resources if isinstance(r, File)}
    crontab = files[scheduled.CRONTAB]
    assert (crontab.owner, crontab.group, crontab.mode) == ("root", "root", 0o600)
    jobs = [line for line in crontab.content.splitlines() if line and not line.startswith("#")]
    log = f">>{scheduled.SCHEDULE_LOG} 2>&1"
    assert jobs == [f"30 3 * * 0 {pgbackrest.BACKUP_SCRIPT} full {log}",
                    f"30 3 * * 1,2,3,4,5,6 {pgbackrest.BACKUP_SCRIPT} diff {log}",
                    f"30 5 * * * {scheduled.DRILL_SCRIPT} --config {scheduled.DRILL_SETTINGS} {log}"]
    assert not [path for path in files if path.startswith("/etc/systemd/")]
    assert Packages(("busybox-static",)) in state.resources
    (crond,) = [r for r in state.resources if isinstance(r, Service) and r.name == "photostack crond"]
    assert f"crond -f -c {scheduled.CRON_DIR}" in crond.start and "TZ=UTC" in crond.start
    (change,) = crontab.changes("missing")
    assert f"+30 5 * * * {scheduled.DRILL_SCRIPT}" in change.diff
    settings = json.loads(files[scheduled.DRILL_SETTINGS].content)
    assert settings["stanzas"] == {"shard0": [5433, 5434], "shard1": [5435, 5436]}
    assert files[scheduled.DRILL_SCRIPT].content.startswith("#!/usr/bin/python3 -I\n")
    assert files[scheduled.DRILL_SCRIPT].mode == 0o755


def test_aws_hosts_schedule_backups_and_drills_with_systemd_timers():
    """Every AWS (and lab) host runs systemd: a oneshot service and a timer per job, at the
    stack config's times; the earlier release's cron file goes."""
    from infra.inventory import Host
    from infra.topology import nodes
    from roles.engine.resources import Absent, Service
    from roles.postgres import scheduled

    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    document["config"]["photostack:backups"] = {"drillSchedule": "15 6 * * 1-5", "drillStaleAfterH": 80}
    config = parse_stack_config(document)
    node = next(n for n in nodes(config) if n.role == "postgres")
    host = Host(node.name, "10.0.0.4", 22, "ubuntu", (node,))
    state = scheduled.timers(RoleContext(config, "prod", host, (host,), lambda name: f"secret-{name}"))
    files = {r.path: r.content for r in state.resources if isinstance(r, File)}
    timer = files["/etc/systemd/system/photostack-restore-drill.timer"]
    assert "OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 06:15:00 UTC\n" in timer and "Persistent=true" in timer
    assert "OnCalendar=Sun *-*-* 03:30:00 UTC\n" in files["/etc/systemd/system/photostack-backup-full.timer"]
    service = files["/etc/systemd/system/photostack-backup-diff.service"]
    assert "User=postgres\n" in service and f"ExecStart={pgbackrest.BACKUP_SCRIPT} diff\n" in service
    assert Absent(scheduled.OLD_CRON_FILE) in state.resources
    timers = [r for r in state.resources if isinstance(r, Service)]
    assert [t.name for t in timers] == ["timer photostack-backup-full", "timer photostack-backup-diff",
                                        "timer photostack-restore-drill"]
    assert all("systemctl enable --now" in t.start and "is-active" in t.status for t in timers)
    (handler,) = state.handlers
    assert handler.run.startswith("systemctl daemon-reload && systemctl restart ")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_timer_units_pass_systemds_own_check(tmp_path):
    """systemd-analyze verify: every setting parses, each timer finds its service. The programs
    they start are installed by the role on the host; here /bin/true stands in (verify wants an
    executable)."""
    from infra.inventory import Host
    from infra.topology import nodes
    from roles.postgres import scheduled

    config = load_stack_config("prod")
    node = next(n for n in nodes(config) if n.role == "postgres")
    host = Host(node.name, "10.0.0.4", 22, "ubuntu", (node,))
    units = [r for r in scheduled.timers(RoleContext(config, "prod", host, (host,), lambda name: "")).resources
             if isinstance(r, File)]
    for unit in units:
        content = re.sub(r"^ExecStart=\S+", "ExecStart=/bin/true", unit.content, flags=re.M)
        (tmp_path / Path(unit.path).name).write_text(content)
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
                          capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    assert len(units) == 6


def test_last_drill_row_parsed():
    found = bk.parse_drill("1764500000|true|20261130-184313F|12.5|marker 9 found, 3 tables\n")
    assert found == bk.DrillResult(datetime.fromtimestamp(1764500000, UTC), True, "20261130-184313F", 12.5,
                                   "marker 9 found, 3 tables")
    failed = bk.parse_drill("1764500000|false||| pgbackrest check failed: a|b")
    assert not failed.ok and failed.restore_s is None and failed.detail == " pgbackrest check failed: a|b"
    assert bk.parse_drill("") is None
