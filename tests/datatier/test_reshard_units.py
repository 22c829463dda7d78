"""Resharding's pure parts: the versioned map (grow, shrink, rebalance), move plans, the CLI's
input checks, and the app's router picking up a changed map file. No servers needed."""

from __future__ import annotations

import json

import psycopg
import pytest
from typer.testing import CliRunner

from app.shards import MovingShardMiddleware, ShardRouter
from infra.config import parse_stack_config
from infra.sharding import ShardMap, ranges
from ops import reshard
from ops.cli import app as ops_app


def _config(physical: int):
    return parse_stack_config({"config": {
        "photostack:target": "onebox", "photostack:domain": "x.example", "photostack:environment": "t",
        "photostack:fleets": {k: {"count": 1} for k in ("nginx", "app", "worker")},
        "photostack:postgres": {"logicalShards": 64, "physicalShards": physical},
    }})


def test_growing_adds_an_empty_physical_shard_and_a_new_version():
    start = ShardMap.initial(_config(2))
    grown = start.grown()
    assert grown.physical_shards == 3 and grown.logical_on(2) == [] and grown.placement == start.placement
    assert grown.version == start.version + 1
    assert grown.moved(40, 2).version == grown.version + 1
    # A round trip keeps the version; a map stored before versions reads as version 0.
    assert ShardMap.from_json(grown.to_json()) == grown
    old = json.loads(start.to_json())
    del old["version"]
    assert ShardMap.from_json(json.dumps(old)).version == 0


def test_a_map_placing_a_logical_shard_on_a_missing_physical_shard_is_refused():
    bad = json.loads(ShardMap.initial(_config(2)).to_json())
    bad["placement"][3] = 7
    with pytest.raises(ValueError, match="outside 0..1"):
        ShardMap.from_json(json.dumps(bad))


def test_only_an_empty_last_shard_can_be_removed():
    grown = ShardMap.initial(_config(2)).grown()
    assert grown.shrunk().physical_shards == 2
    with pytest.raises(ValueError, match="physical shard 2 still holds 1 logical shards \\(40\\)"):
        grown.moved(40, 2).shrunk()


def test_the_config_asking_for_one_more_shard_names_the_command_that_adds_it():
    stored = ShardMap.initial(_config(2))
    (line,) = stored.disagreements(_config(3), "shardmap.json")
    assert "ops shard add" in line
    (line,) = stored.grown().disagreements(_config(2), "shardmap.json")
    assert "ops shard remove" in line


def test_rebalance_evens_out_with_the_fewest_moves():
    grown = ShardMap.initial(_config(2)).grown()  # 32 + 32 + 0
    moves = grown.rebalanced()
    after = grown
    for logical, target in moves:
        after = after.moved(logical, target)
    counts = sorted(len(after.logical_on(p)) for p in range(3))
    assert counts == [21, 21, 22] and len(moves) == 21
    assert all(target == 2 for _, target in moves)
    assert after.rebalanced() == []


def test_move_plans_are_checked_against_the_map():
    grown = ShardMap.initial(_config(2)).grown()
    assert reshard.plan_moves(grown, [24, 25], 2) == [(24, 0, 2), (25, 0, 2)]
    for logical, target, message in [([24], 3, "--to 3: no such physical shard"),
                                     ([64], 2, "--logical 64: no such logical shard"),
                                     ([40], 1, "--logical 40: already on physical shard 1"),
                                     ([24, 24], 2, "names a logical shard twice")]:
        with pytest.raises(reshard.ReshardError, match=message):
            reshard.plan_moves(grown, logical, target)


def test_ranges_are_compact():
    assert ranges([5, 0, 1, 2, 9, 10]) == "0-2, 5, 9-10"
    assert ranges([]) == ""


def test_the_router_follows_the_map_file_when_it_is_replaced(tmp_path):
    path = tmp_path / "shardmap.json"
    start = ShardMap.initial(_config(2)).grown()
    path.write_text(start.to_json())
    router = ShardRouter(start, lambda db: f"dbname={db}", epoch_ms=0, source=path)
    router.refresh()
    assert router.shard_map.physical_of(24) == 0
    tmp = tmp_path / "new.json"
    tmp.write_text(start.moved(24, 2).to_json())
    tmp.replace(path)  # how the converge writes it: a new file renamed over the old one
    router.refresh()
    assert router.shard_map.physical_of(24) == 2
    path.write_text("{not json")  # a broken file keeps the map in use
    router.refresh()
    assert router.shard_map.physical_of(24) == 2


def test_a_write_refused_during_a_cut_over_is_a_503_to_retry(app_stack):
    # app_stack sets Django up with the app's settings (configuring bare settings here would leave
    # every later app test in this process with the wrong ones).
    middleware = MovingShardMiddleware(lambda request: None)
    response = middleware.process_exception(None, psycopg.errors.InsufficientPrivilege("permission denied"))
    assert response.status_code == 503 and response["Retry-After"] == "1"
    assert middleware.process_exception(None, ValueError("other")) is None


@pytest.mark.parametrize("args, message", [
    (["shard", "move", "--logical", "3,x", "--to", "1"], "'x' is not a logical shard number"),
    (["shard", "move", "--resume", "--rollback"], "choose one"),
    (["shard", "rebalance"], "exactly one of --dry-run and --yes"),
])
def test_shard_commands_refuse_bad_input_with_one_line(args, message):
    result = CliRunner().invoke(ops_app, args)
    assert result.exit_code == 2 and message in result.output


def test_status_shows_logical_ranges_per_physical_shard_and_the_moves_in_progress():
    from rich.console import Console

    from ops.shard_cli import map_table

    shard_map = ShardMap.initial(_config(2)).grown().moved(31, 2)
    console = Console(width=120, record=True)
    console.print(map_table(shard_map, {"moves": [[30, 0, 2], [29, 0, 2]], "step": "copy"}))
    text = console.export_text()
    assert "shard map v2" in text
    assert "0-30" in text and "32-63" in text and "shard2" in text
    assert "30: shard0 → shard2" in text and "waiting" in text
