"""The stack config: shipped stacks load; every bad config gives one line naming the key and exit 2."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.config import ConfigError, load_stack_config, parse_stack_config, required_secrets

ROOT = Path(__file__).resolve().parent.parent


def onebox_document() -> dict:
    return yaml.safe_load((ROOT / "Pulumi.onebox.yaml").read_text())


def prod_document() -> dict:
    return yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())


SHIPPED_STACKS = sorted(path.name.split(".")[1] for path in ROOT.glob("Pulumi.*.yaml"))


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_shipped_stacks_load(stack: str) -> None:
    config = load_stack_config(stack)
    assert config.postgres.logical_shards % config.postgres.physical_shards == 0


def test_prod_is_instagram_2011_scale() -> None:
    config = load_stack_config("prod")
    assert (config.fleets.nginx.count, config.fleets.app.count) == (3, 25)
    assert config.postgres.physical_shards == 12 and config.postgres.replicas_per_shard == 1
    assert config.postgres.logical_shards >= 2000
    assert (config.memcached.count, config.redis.replicas, config.rabbitmq.nodes) == (6, 1, 3)
    assert set(required_secrets(config)) <= set(config.secrets)


def _set(document: dict, dotted: str, value) -> dict:
    document = copy.deepcopy(document)
    key, *path = dotted.split(".")
    node = document["config"]
    if not path:
        node[key] = value
        return document
    node = node[key]
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return document


def _drop(document: dict, dotted: str) -> dict:
    document = copy.deepcopy(document)
    key, *path = dotted.split(".")
    if not path:
        del document["config"][key]
        return document
    node = document["config"][key]
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return document


ONEBOX = onebox_document()
PROD = prod_document()

# (scenario, document, the key path the one line must name, a word of the reason)
BAD_CONFIGS = [
    ("unknown_top_level_key", _set(ONEBOX, "photostack:colour", "blue"), "photostack:colour", "unknown key"),
    ("unknown_nested_key", _set(ONEBOX, "photostack:fleets.app.cpus", 4), "photostack:fleets.app.cpus", "unknown key"),
    ("count_wrong_type", _set(ONEBOX, "photostack:fleets.app.count", "many"), "photostack:fleets.app.count", "integer"),
    ("negative_count", _set(ONEBOX, "photostack:fleets.worker.count", -1), "photostack:fleets.worker.count", "greater than or equal"),
    ("unknown_target", _set(ONEBOX, "photostack:target", "gcp"), "photostack:target", "'aws' or 'onebox'"),
    ("missing_target", _drop(ONEBOX, "photostack:target"), "photostack:target", "missing"),
    ("missing_postgres", _drop(ONEBOX, "photostack:postgres"), "photostack:postgres", "missing"),
    ("more_physical_than_logical_shards", _set(ONEBOX, "photostack:postgres.physicalShards", 65), "photostack:postgres", "at least"),
    ("shards_overflow_13_bits", _set(_set(ONEBOX, "photostack:postgres.logicalShards", 16384), "photostack:postgres.physicalShards", 2),
     "photostack:postgres.logicalShards", "13-bit"),
    ("zero_physical_shards", _set(ONEBOX, "photostack:postgres.physicalShards", 0), "photostack:postgres.physicalShards", "greater than or equal"),
    ("bad_postgres_version", _set(ONEBOX, "photostack:postgres.version", 9), "photostack:postgres.version", "15"),
    ("bad_domain", _set(ONEBOX, "photostack:domain", "not a domain"), "photostack:domain", "DNS name"),
    ("bad_eviction_policy", _set(ONEBOX, "photostack:redis.maxmemoryPolicy", "lru"), "photostack:redis.maxmemoryPolicy", "allkeys-lru"),
    ("onebox_not_loopback", _set(ONEBOX, "photostack:onebox", {"address": "10.0.0.5"}), "photostack:onebox.address", "loopback"),
    ("privileged_ssh_port", _set(ONEBOX, "photostack:onebox", {"sshPort": 22}), "photostack:onebox.sshPort", "greater than or equal"),
    ("plain_text_secret_on_aws", _set(PROD, "photostack:dbPassword", "hunter2"), "photostack:dbPassword", "not in plain text"),
    ("missing_secret_on_aws", _drop(PROD, "photostack:dbPassword"), "photostack:dbPassword", "missing secret"),
    ("secret_in_onebox_yaml", _set(ONEBOX, "photostack:redisPassword", "x"), "photostack:redisPassword", "state dir"),
    ("one_zone_on_aws", _set(PROD, "photostack:availabilityZones", ["us-east-1a"]), "photostack", "availabilityZones"),
    ("bad_vpc_cidr", _set(PROD, "photostack:vpcCidr", "10.0.0.0/33"), "photostack:vpcCidr", "10.0.0.0/33"),
    ("unnamespaced_key", _set(ONEBOX, "target", "onebox"), "target", "namespaced"),
    ("limits_not_a_mapping", _set(ONEBOX, "photostack:monitoring.limits", ["x"]), "photostack:monitoring.limits", "dictionary"),
]


@pytest.mark.parametrize("scenario,document,key,reason", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_one_line_naming_the_key(scenario, document, key, reason) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(document)
    problems = caught.value.problems
    matching = [p for p in problems if p.startswith(f"{key}:") or p.startswith(f"{key} ")]
    assert matching, f"no problem names {key}: {problems}"
    assert reason in matching[0], matching[0]
    assert all("\n" not in p for p in problems)


@pytest.mark.parametrize("scenario,document,key,reason", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_ops_exits_2_with_the_line_and_touches_nothing(
    scenario, document, key, reason, tmp_path, monkeypatch, capsys
) -> None:
    (tmp_path / "Pulumi.bad.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.setenv("PHOTOSTACK_STACKS_DIR", str(tmp_path))
    monkeypatch.setenv("PHOTOSTACK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(sys, "argv", ["ops", "--stack", "bad", "converge"])
    from ops.cli import main

    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err
    assert not (tmp_path / "state" / "bad" / "ssh").exists(), "a bad config must stop before any host is touched"


def test_malformed_yaml_is_one_line(tmp_path) -> None:
    path = tmp_path / "Pulumi.broken.yaml"
    path.write_text("config:\n  photostack:target: [onebox\n")
    with pytest.raises(ConfigError) as caught:
        load_stack_config("broken", path=path)
    (line,) = caught.value.problems
    assert line.startswith("Pulumi.broken.yaml:3: not valid YAML"), line


def test_missing_stack_file_through_the_real_command(tmp_path) -> None:
    env = {"PHOTOSTACK_STACKS_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "ops", "--stack", "nosuch", "status"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"Pulumi.nosuch.yaml: stack 'nosuch' has no config file at {tmp_path / 'Pulumi.nosuch.yaml'}"
    ]
