"""The PostgreSQL major: unpinned, the one the target's OS ships (Ubuntu 24.04 on AWS has no
postgresql-15); pinned, as pinned; and never changed under an existing cluster — the converge
stops naming the cluster instead of creating an empty one beside its data."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from infra.config import load_stack_config
from infra.inventory import onebox_hosts
from roles.context import RoleContext
from roles.postgres.cluster import cluster_of
from roles.postgres.role import same_major


def test_unpinned_the_major_is_the_targets_distro_and_a_pin_wins() -> None:
    assert load_stack_config("prod").postgres.version == 16
    assert load_stack_config("onebox").postgres.version == 15
    assert load_stack_config("lab").postgres.version == 15  # pinned: lab hosts run Debian 12


def guard(version: int):
    loaded = load_stack_config("onebox")
    config = loaded.model_copy(update={"postgres": loaded.postgres.model_copy(update={"version": version})})
    hosts = tuple(onebox_hosts(config))
    ctx = RoleContext(config, "onebox", hosts[0], hosts, lambda name: "x")
    return same_major(cluster_of(ctx, hosts[0].nodes_of("postgres")[0]))


def in_etc(tmp_path: Path, existing: str, script: str) -> subprocess.CompletedProcess:
    """Run `script` with a private /etc/postgresql holding the cluster dir `existing` (its own mount
    namespace: the machine's /etc is untouched)."""
    etc = tmp_path / "etc-postgresql"
    (etc / existing).mkdir(parents=True)
    wrapped = f"mount --bind {shlex.quote(str(etc))} /etc/postgresql && {script}"
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", wrapped],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(not Path("/etc/postgresql").is_dir(), reason="needs /etc/postgresql to mount over")
def test_a_new_major_under_an_existing_cluster_stops_with_one_line(tmp_path: Path) -> None:
    command = guard(16)
    assert in_etc(tmp_path, "15/shard0", command.unless).returncode != 0  # the guard is needed
    done = in_etc(tmp_path / "run", "15/shard0", command.run)
    assert done.returncode == 1
    assert done.stderr.strip() == ("cluster shard0 exists under another PostgreSQL major (15), not 16: "
                                   "pin photostack:postgres.version to it")


@pytest.mark.skipif(not Path("/etc/postgresql").is_dir(), reason="needs /etc/postgresql to mount over")
def test_the_same_major_or_no_cluster_passes(tmp_path: Path) -> None:
    assert in_etc(tmp_path, "15/shard0", guard(15).unless).returncode == 0
    assert in_etc(tmp_path / "other", "15/shard1", guard(16).unless).returncode == 0
