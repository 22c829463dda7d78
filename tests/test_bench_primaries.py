"""The benches that talk to a shard's primary directly follow the stored primaries."""

from __future__ import annotations

from bench.lib.primaries import primary_port
from infra.shardstore import primaries_store
from ops.stack import Stack


def test_after_a_failover_the_benches_reach_the_promoted_replica(state_root):
    stack = Stack.load("onebox")
    before = [primary_port(stack, shard) for shard in (0, 1)]
    store = primaries_store(stack.config, stack.name)
    store.save(store.load().failed_over(0, 1))
    after = [primary_port(stack, shard) for shard in (0, 1)]
    assert after == [before[0] + 1, before[1]]  # shard 0 member 1 (shard0r1) is next to shard0
    store.save(store.load().failed_over(0, 0))
    assert primary_port(stack, 0) == before[0]
