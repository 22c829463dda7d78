"""A logical shard's move between two real throwaway PostgreSQL 15 clusters, by the SQL of
ops/reshard_sql.py, under a concurrent writer: nothing acknowledged is lost, writes during the
cut-over are refused (never half-applied), ids continue past the source's, and a rolled-back
copy leaves nothing behind."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from infra.sharding import SEQUENCE_BITS
from ops import reshard_sql as sql
from tests.datatier.pgpair import PgPair, start_pair

LOGICAL = 5


@pytest.fixture
def pair():
    """A fresh pair per test: the tests run in any order, and each starts from an empty source."""
    started = start_pair()
    yield started
    started.stop()


class Writer(threading.Thread):
    """Inserts photos as the app login until stopped; counts refusals (the freeze)."""

    def __init__(self, dsn: str):
        super().__init__(daemon=True)
        self.dsn, self.acked, self.refused, self.stop = dsn, [], 0, threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                try:
                    (photo,) = conn.execute(f"INSERT INTO shard_{LOGICAL:04d}.photos (user_id, image_key, width, height) "
                                            "VALUES (1, 'k', 1, 1) RETURNING id").fetchone()
                    self.acked.append(photo)
                except psycopg.errors.InsufficientPrivilege:
                    self.refused += 1
                    time.sleep(0.01)


def _ids(pair: PgPair, which) -> list[int]:
    with psycopg.connect(pair.dsn(which), autocommit=True) as conn:
        return [r[0] for r in conn.execute(f"SELECT id FROM shard_{LOGICAL:04d}.photos")]


def test_a_rolled_back_copy_leaves_nothing_and_writes_go_on(pair):
    pair.create_logical(LOGICAL)
    pair.copy(LOGICAL)
    pair.psql(pair.source, sql.freeze_sql(LOGICAL))  # interrupted during its cut-over
    pair.abandon(LOGICAL)
    assert pair.value(pair.target, sql.has_schema(LOGICAL)) == "f"
    assert pair.value(pair.source, "SELECT count(*) FROM pg_replication_slots") == "0"
    assert pair.value(pair.source, "SELECT count(*) FROM pg_publication") == "0"
    writer = Writer(pair.dsn(pair.source))
    writer.start()
    time.sleep(0.3)
    writer.stop.set()
    writer.join()
    assert writer.acked and writer.refused == 0  # the writes are the app's again


def test_a_move_under_writes_loses_nothing_and_ids_continue(pair):
    pair.create_logical(LOGICAL)
    writer = Writer(pair.dsn(pair.source))
    writer.start()
    time.sleep(0.3)
    pair.copy(LOGICAL)
    time.sleep(0.3)  # changes stream after the initial copy
    last = pair.cut_over(LOGICAL)
    refused_at_cut_over = writer.refused
    time.sleep(0.2)
    writer.stop.set()
    writer.join()
    pair.clean(LOGICAL)

    moved = _ids(pair, pair.target)
    assert set(writer.acked) <= set(moved)  # every acknowledged write is on the target
    assert len(moved) == len(set(moved))
    assert refused_at_cut_over > 0  # the load really ran into the freeze
    with psycopg.connect(pair.dsn(pair.target), autocommit=True) as conn:
        (new,) = conn.execute(f"INSERT INTO shard_{LOGICAL:04d}.photos (user_id, image_key, width, height) "
                              "VALUES (1, 'after', 1, 1) RETURNING id").fetchone()
    assert new & ((1 << SEQUENCE_BITS) - 1) == (last + 1) % (1 << SEQUENCE_BITS)  # the sequence went on
    assert new not in moved
    assert pair.value(pair.source, sql.has_schema(LOGICAL)) == "f"  # the old copy is gone
    assert pair.value(pair.source, "SELECT count(*) FROM pg_replication_slots") == "0"
    assert pair.value(pair.target, "SELECT count(*) FROM pg_subscription") == "0"
