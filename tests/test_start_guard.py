"""The start guard of a Postgres cluster (roles/postgres/boot_guard.py): a former primary whose
machine a failover powered off does not come back as a second primary when it is started again."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.config import REPO_ROOT, load_stack_config
from infra.inventory import Host, onebox_hosts
from infra.shardstore import Primaries, primaries_store
from infra.topology import nodes
from roles.context import RoleContext
from roles.converge import host_state
from roles.engine.resources import Command, File, Service
from roles.postgres import boot_guard
from roles.postgres.commands import FENCED_SUFFIX
from tests._infra_plans import planned_parameters, use_ssm
from tests.fakes.ssm_server import SsmServer


@pytest.fixture
def stack(tmp_path: Path, state_root: Path, monkeypatch) -> str:
    """The one-box stack config in a stacks dir of its own (the guard reads the record wherever the
    stack's target keeps it: here a file in the state dir)."""
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    shutil.copy(REPO_ROOT / "Pulumi.onebox.yaml", stacks / "Pulumi.onebox.yaml")
    monkeypatch.setenv("PHOTOSTACK_STACKS_DIR", str(stacks))
    return "onebox"


def _data_dir(tmp_path: Path, standby: bool) -> Path:
    data = tmp_path / "15" / "shard0"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("15\n")
    if standby:
        (data / "standby.signal").touch()
    return data


def _failed_over(stack: str) -> None:
    """Shard 0's replica (member 1) was promoted: the record a failover stores."""
    store = primaries_store(load_stack_config(stack), stack)
    store.save(Primaries().failed_over(0, 1))


def test_a_former_primary_is_fenced_at_start_and_stays_fenced(stack, tmp_path):
    _failed_over(stack)
    data = _data_dir(tmp_path, standby=False)

    first = subprocess.run([sys.executable, "-m", "roles.postgres.boot_guard", stack, "0", "0", str(data)],
                           capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)

    assert first.returncode == boot_guard.FENCED, first.stderr
    assert not data.exists() and (Path(f"{data}{FENCED_SUFFIX}") / "PG_VERSION").is_file()
    assert "rebuild-replica --shard 0" in first.stderr and len(first.stderr.strip().splitlines()) == 1
    # Started again (a reboot, systemctl): still fenced, the moved data dir kept for forensics.
    assert boot_guard.guard(stack, 0, 0, str(data)) == boot_guard.FENCED
    assert (Path(f"{data}{FENCED_SUFFIX}") / "PG_VERSION").is_file()


def test_the_stored_primary_and_standbys_start(stack, tmp_path):
    _failed_over(stack)
    promoted = _data_dir(tmp_path / "a", standby=False)
    standby = _data_dir(tmp_path / "b", standby=True)
    assert boot_guard.guard(stack, 0, 1, str(promoted)) == 0
    assert boot_guard.guard(stack, 0, 0, str(standby)) == 0  # the rebuilt old primary
    assert promoted.is_dir() and standby.is_dir()


def test_with_no_failover_recorded_the_original_primary_starts(stack, tmp_path):
    data = _data_dir(tmp_path, standby=False)
    assert boot_guard.guard(stack, 0, 0, str(data)) == 0
    assert data.is_dir()


def test_a_primary_that_cannot_read_the_record_does_not_start(stack, tmp_path, monkeypatch):
    data = _data_dir(tmp_path, standby=False)
    monkeypatch.setattr(boot_guard, "RECORD_PATIENCE_S", 0.0)
    monkeypatch.setenv("PHOTOSTACK_STACKS_DIR", str(tmp_path / "nowhere"))  # no stack config to read

    assert boot_guard.guard(stack, 0, 0, str(data)) == 1
    assert (data / "PG_VERSION").is_file()  # nothing moved: it may well be the primary


@pytest.fixture
def lab_records(monkeypatch):
    """The lab plan's SSM records on a local SSM (the roles read the primaries from it)."""
    with SsmServer("us-east-1", planned_parameters("lab")) as server:
        use_ssm(monkeypatch, server.url)
        yield


def _rendered(stack: str, node_name: str) -> tuple[Host, list]:
    config = load_stack_config(stack)
    all_nodes = nodes(config)
    hosts = tuple(Host(n.name, f"10.213.0.{i + 10}", 22, "admin", (n,), "") for i, n in enumerate(all_nodes)) \
        if stack == "lab" else tuple(onebox_hosts(config))
    host = next(h for h in hosts if any(n.name == node_name for n in h.nodes)) if stack == "lab" else hosts[0]
    ctx = RoleContext(config, stack, host, hosts, lambda name: f"secret-{name}")
    return host, host_state(ctx, {"postgres"}).resources


def test_systemd_hosts_get_the_guard_before_every_start_of_each_cluster(lab_records):
    """On hosts that boot systemd (AWS, the lab), the postgres role renders each cluster unit's
    drop-in with the cluster's own shard, member and data dir, and has systemd load it before
    the cluster's first start."""
    config = load_stack_config("lab")
    replica = next(n for n in nodes(config) if n.role == "postgres" and n.attrs["replica"] == 1)
    _, resources = _rendered("lab", replica.name)
    drop_in = next(r for r in resources if isinstance(r, File) and "start-guard" in r.path)
    unit = "postgresql@15-shard0r1.service"
    assert drop_in.path == f"/etc/systemd/system/{unit}.d/photostack-start-guard.conf"
    assert "-m roles.postgres.boot_guard lab 0 1 /var/lib/postgresql/15/shard0r1" in drop_in.content
    assert "RestartPreventExitStatus=3" in drop_in.content
    names = [getattr(r, "name", getattr(r, "path", "")) for r in resources]
    loaded = next(i for i, r in enumerate(resources) if isinstance(r, Command) and "start guard" in r.name)
    started = next(i for i, r in enumerate(resources) if isinstance(r, Service) and r.name == "postgres shard0r1")
    assert names.index(drop_in.path) < loaded < started


def test_the_one_box_has_no_unit_to_guard(stack):
    _, resources = _rendered(stack, "")
    assert not any(isinstance(r, File) and "start-guard" in r.path for r in resources)
