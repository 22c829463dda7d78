"""Role settings are overridable per stack (`photostack:roles.<role>.<key>`), checked against
what each role declares in its defaults.yaml: an override reaches the rendered file of that
stack only; an undeclared key, an unknown role or a value of another kind is one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.config import load_stack_config
from infra.inventory import onebox_hosts
from infra.role_settings import declared
from roles.context import RoleContext
from roles.engine.resources import File
from roles.redis.role import desired as redis_desired

ROOT = Path(__file__).resolve().parents[2]


def stack_with_roles(tmp_path: Path, roles: object) -> Path:
    document = yaml.safe_load((ROOT / "Pulumi.onebox.yaml").read_text())
    document["config"]["photostack:roles"] = roles
    (tmp_path / "Pulumi.custom.yaml").write_text(yaml.safe_dump(document))
    return tmp_path / "Pulumi.custom.yaml"


def redis_conf(config) -> str:
    hosts = tuple(onebox_hosts(config))
    ctx = RoleContext(config, "custom", hosts[0], hosts, lambda name: "x")
    confs = [r.content for r in redis_desired(ctx).resources if isinstance(r, File) and r.path.startswith("/etc/redis/")]
    assert confs
    return "".join(confs)


def test_an_override_reaches_the_rendered_file_of_its_stack_only(tmp_path: Path) -> None:
    assert declared("redis")["redis_timeout"] != 300
    custom = load_stack_config("custom", path=stack_with_roles(tmp_path, {"redis": {"redis_timeout": 300}}))
    assert "\ntimeout 300\n" in redis_conf(custom)
    assert "\ntimeout 300\n" not in redis_conf(load_stack_config("onebox"))


@pytest.mark.parametrize("roles,line", [
    ({"redis": {"redis_timout": 300}}, "photostack:roles.redis.redis_timout: not a setting of role redis"),
    ({"rediss": {"redis_timeout": 300}}, "photostack:roles.rediss: no such role"),
    ({"redis": {"redis_timeout": True}}, "photostack:roles.redis.redis_timeout: must be a whole number"),
    ({"redis": {"redis_timeout": "300"}}, "photostack:roles.redis.redis_timeout: must be a whole number"),
    ({"redis": {"redis_replica_appendonly": 1}}, "photostack:roles.redis.redis_replica_appendonly: must be true or false"),
    ({"redis": ["redis_timeout"]}, "photostack:roles.redis"),
])
def test_a_bad_override_is_one_line_and_exit_2(tmp_path: Path, roles: object, line: str) -> None:
    stack_with_roles(tmp_path, roles)
    result = subprocess.run([sys.executable, "-m", "ops", "--stack", "custom", "check"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PHOTOSTACK_STACKS_DIR": str(tmp_path),
                                 "PHOTOSTACK_STATE_DIR": str(tmp_path / "state")}, cwd=ROOT, timeout=60)
    assert result.returncode == 2, result
    assert line in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "state").exists()
