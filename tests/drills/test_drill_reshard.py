"""Drill: add a physical shard and move a quarter of shard 0's logical shards onto it under app
load (posts, likes, feed reads through nginx); then a move interrupted mid cut-over is resumed
and another is rolled back. Afterwards every logical shard goes back and the shard is removed,
so the one-box ends as the config states it."""

from __future__ import annotations

import time

import pytest

from infra.sharding import decode_id
from ops import reshard
from ops import reshard_sql as sql
from ops.remote import check_converged
from ops.stack import Stack
from tests.drills.desired import assert_converged
from tests.drills.reshard_drill import ReshardLoad, grown_config

pytestmark = pytest.mark.onebox


class Interrupted(KeyboardInterrupt):
    """What Ctrl-C raises, at a chosen step."""


def interrupt_at(prefix: str):
    def progress(step: str) -> None:
        if step.startswith(prefix):
            raise Interrupted(step)
    return progress


def _schema_on(stack: Stack, physical: int, logical: int) -> bool:
    primary = reshard.members(stack, physical)[0]
    return reshard._true(stack, primary, sql.has_schema(logical))


def _publication_on(stack: Stack, physical: int, logical: int) -> bool:
    primary = reshard.members(stack, physical)[0]
    return reshard._true(stack, primary, f"SELECT count(*) > 0 FROM pg_publication WHERE pubname = "
                                         f"'{sql.move_name(logical)}'")


def test_move_a_quarter_of_a_shard_onto_a_new_one_under_load(converged, tmp_path):
    two = converged
    three = Stack.load("onebox", config_path=grown_config(tmp_path / "Pulumi.onebox.yaml", 3))
    # This tree's app (it follows a replaced map, answers 503 during a cut-over) and wal_level=logical.
    check_converged(two.converge(two.hosts, {"postgres", "app", "worker"}), "converging this tree")
    try:
        reshard.add_shard(three)
        assert_converged(three, "`ops shard add`")
        start = reshard.stored_map(three)
        assert start.physical_shards == 3 and start.logical_on(2) == []
        on_zero = start.logical_on(0)
        quarter = on_zero[-len(on_zero) // 4:]
        others = [on_zero[0], start.logical_on(1)[0]]
        load = ReshardLoad(three, quarter + others).start()
        try:
            time.sleep(3)  # photos exist before the first move
            results = reshard.move(three, reshard.plan_moves(start, quarter, 2))
            at_flip = {id(w): len(w.photos) for w in load.writers}
            time.sleep(3)  # writes land on the new shard
        finally:
            load.stop()
        moved = reshard.stored_map(three)
        assert [moved.physical_of(n) for n in quarter] == [2] * len(quarter)
        assert moved.version == start.version + len(quarter)
        assert reshard.pending(three) is None
        assert not any(_schema_on(three, 0, n) for n in quarter)  # the old copies are gone
        assert_converged(three, "`ops shard move`")

        failures = [f for w in load.writers for f in w.failures]
        assert failures == []  # reads never failed; writes only ever paused (503)
        photos = load.acked_photos()
        assert len(photos) > 50  # the load really ran
        assert len(set(photos)) == len(photos)  # no duplicate ids
        assert any(len(w.photos) > at_flip[id(w)] for w in load.writers if w.logical in quarter)  # posts went on
        # Every acknowledged photo and like is there, on the shard its id names.
        reader = load.writers[0].client
        likes: dict[int, int] = {}
        for photo, _ in (like for w in load.writers for like in w.likes):
            likes[photo] = likes.get(photo, 0) + 1
        for photo in photos:
            status, body = reader.call("GET", f"/api/photos/{photo}")
            assert status == 200, (photo, body)
            assert body["like_count"] == likes.get(photo, 0), photo
            assert decode_id(photo, three.config.postgres.id_epoch_ms).logical_shard in quarter + others
        pauses = sorted(r.pause_s for r in results)
        seen = sorted(p for w in load.writers for p in w.pauses)
        print(f"\nmoved {len(quarter)} logical shards: write pause per shard (ops) max {pauses[-1]:.2f}s, "
              f"median {pauses[len(pauses) // 2]:.2f}s; client-seen pauses {[round(p, 2) for p in seen]}; "
              f"{len(photos)} photos, {sum(len(w.likes) for w in load.writers)} likes, "
              f"{sum(w.reads for w in load.writers)} reads, {sum(w.refused for w in load.writers)} writes answered 503")

        # A move interrupted during its cut-over: writes come back at once, the map is unchanged,
        # and the move resumes to the end.
        first = on_zero[0]
        with pytest.raises(Interrupted):
            reshard.move(three, reshard.plan_moves(moved, [first], 2), interrupt_at("wait until the target"))
        assert reshard.stored_map(three).physical_of(first) == 0
        assert reshard.pending(three)["step"] == "copy"
        writer = next(w for w in load.writers if w.logical == first)
        status, body = writer.client.post_photo("written while the move waits")
        assert status == 201, body
        (resumed,) = reshard.resume(three)
        assert reshard.stored_map(three).physical_of(first) == 2 and reshard.pending(three) is None
        assert_converged(three, "`ops shard move --resume`")
        status, body = writer.client.call("GET", f"/api/photos/{body['id']}")
        assert status == 200, body  # the photo written during the interruption moved too

        # A move interrupted after its copy, rolled back: the copy goes, the source keeps it all.
        second = on_zero[1]
        with pytest.raises(Interrupted):
            reshard.move(three, reshard.plan_moves(reshard.stored_map(three), [second], 2),
                         interrupt_at("freeze"))
        assert _schema_on(three, 2, second)
        reshard.rollback(three)
        assert reshard.stored_map(three).physical_of(second) == 0 and reshard.pending(three) is None
        assert not _schema_on(three, 2, second) and not _publication_on(three, 0, second)
        assert_converged(three, "`ops shard move --rollback`")
        print(f"interrupted move resumed (pause {resumed.pause_s:.2f}s); another rolled back")
    finally:
        # Back as the config states it: everything on shard 2 returns to shard 0, shard 2 goes.
        if reshard.pending(three):
            reshard.rollback(three)
        back = reshard.stored_map(three)
        if back.physical_shards == 3:
            reshard.move(three, reshard.plan_moves(back, back.logical_on(2), 0))
        reshard.remove_shard(two)
    assert reshard.stored_map(two).physical_shards == 2
