"""Rows and on-disk size per logical shard (postgres_shard_rows_, postgres_shard_size_), run as
munin-node runs them against real PostgreSQL 15: the logical shards a physical shard holds, and
after a move the graph of the shard that received it."""

from __future__ import annotations

import pytest

from ops import reshard_sql as sql
from tests.datatier.pgpair import PgPair, start_pair
from tests.drills.faults import wait_for
from tests.monitoring.conftest import parse_values, run_plugin

BIG, SMALL = 5, 6  # logical shards
BIG_ROWS, SMALL_ROWS = 400, 7


@pytest.fixture
def pair():
    started = start_pair()
    yield started
    started.stop()


def insert_photos(pair: PgPair, logical: int, count: int) -> None:
    pair.psql(pair.source, f"INSERT INTO shard_{logical:04d}.photos (user_id, image_key, width, height) "
                           f"SELECT 1, repeat(md5(g::text), 4), 640, 480 FROM generate_series(1, {count}) g;")


def measure(pair: PgPair, which, plugin: str, tmp_path) -> tuple[dict[str, str], dict[str, str]]:
    """(config settings, values) of `plugin` on the `which` cluster's database."""
    env = {"host": str(pair.root / "sock"), "port": str(which.port), "database": which.database, "login": "postgres"}
    link = f"{plugin}{which.shard}"
    config, _ = run_plugin(plugin, "config", env=env, link_as=link, tmp=tmp_path)
    values, _ = run_plugin(plugin, env=env, link_as=link, tmp=tmp_path)
    return dict(line.split(" ", 1) for line in config.splitlines()), parse_values(values)


def test_rows_and_size_per_logical_shard_and_a_moved_shard_follows(pair, tmp_path):
    for logical in (BIG, SMALL):
        pair.create_logical(logical)
    insert_photos(pair, BIG, BIG_ROWS)
    insert_photos(pair, SMALL, SMALL_ROWS)
    # Rows outside any logical shard's schema are no logical shard's.
    pair.psql(pair.source, "CREATE TABLE public.scratch AS SELECT g FROM generate_series(1, 5000) g;")

    config, rows = measure(pair, pair.source, "postgres_shard_rows_", tmp_path)
    assert config["graph_order"].split() == ["shard_0005", "shard_0006", "total"]
    assert config["graph_title"] == "PostgreSQL shard 0: rows per logical shard"
    assert config["shard_0005.draw"] == "AREASTACK" and config["total.draw"] == "LINE2"
    assert rows == {"shard_0005": str(BIG_ROWS), "shard_0006": str(SMALL_ROWS), "total": str(BIG_ROWS + SMALL_ROWS)}

    config, size = measure(pair, pair.source, "postgres_shard_size_", tmp_path)
    assert "--base 1024" in config["graph_args"]
    on_disk = {schema: int(pair.value(pair.source, f"SELECT pg_total_relation_size('{schema}.photos')"))
               for schema in ("shard_0005", "shard_0006")}
    assert int(size["shard_0005"]) >= on_disk["shard_0005"] > on_disk["shard_0006"]
    assert int(size["shard_0005"]) > int(size["shard_0006"]) >= on_disk["shard_0006"]
    assert int(size["total"]) == int(size["shard_0005"]) + int(size["shard_0006"])

    # Move the big logical shard to physical shard 2: its rows are graphed there, not here.
    pair.copy(BIG)
    pair.cut_over(BIG)
    pair.clean(BIG)
    _, rows = measure(pair, pair.source, "postgres_shard_rows_", tmp_path)
    assert rows == {"shard_0006": str(SMALL_ROWS), "total": str(SMALL_ROWS)}
    # The copy's rows reach the statistics when its workers report them (within seconds).
    def target_rows() -> dict[str, str] | None:
        found = measure(pair, pair.target, "postgres_shard_rows_", tmp_path)[1]
        return found if found.get("shard_0005") == str(BIG_ROWS) else None

    assert wait_for(target_rows, 30) == {"shard_0005": str(BIG_ROWS), "total": str(BIG_ROWS)}
    assert pair.value(pair.target, sql.has_schema(BIG)) == "t"
