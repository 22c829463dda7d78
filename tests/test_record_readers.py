"""The table of roles that render from each stored record (infra/records.py `RENDERED_BY`), held to
what the roles really render: day-2 commands converge exactly these roles after changing a record,
so a role missing from it is left with changes pending (issue 20, item 7)."""

from __future__ import annotations

import pytest

from infra.config import StackConfig, load_stack_config
from infra.inventory import onebox_hosts
from infra.records import RENDERED_BY, readers, record
from infra.shardstore import Primaries, primaries_store, shard_map_store
from ops.reshard import SHARD_ROLES
from roles.redis.primary import save_primary
from roles.context import RoleContext, desired_state
from roles.engine.resources import DesiredState


@pytest.fixture(autouse=True)
def _own_state(state_root):
    """Records are written here: a private state dir, not the live one-box's."""


def rendered(config: StackConfig) -> dict[str, DesiredState]:
    """Every role of the one-box (all on its one host), rendered as a converge would."""
    hosts = tuple(onebox_hosts(config))
    ctx = RoleContext(config, "onebox", hosts[0], hosts, lambda name: f"secret-{name}")
    return {role: desired_state(role, ctx) for role in hosts[0].roles}


def moved(before: dict[str, DesiredState], after: dict[str, DesiredState]) -> set[str]:
    return {role for role in before if before[role] != after[role]}


def _primaries(config: StackConfig) -> None:
    primaries_store(config, "onebox").save(Primaries().failed_over(0, 1).rebuilt(0, 0))


def _shard_map(config: StackConfig) -> None:
    store = shard_map_store(config, "onebox")
    store.save(store.load_or_create(config).moved(0, 1))


def _release(config: StackConfig) -> None:
    record(config, "onebox", "release").save({"version": "0123abcd", "previous": None, "pinned": True})


def _drained(config: StackConfig) -> None:
    record(config, "onebox", "drained").save(["app-0"])


def _redis(config: StackConfig) -> None:
    save_primary(config, "onebox", 1)


CHANGES = {"primaries": _primaries, "shardmap": _shard_map, "release": _release, "drained": _drained,
           "redis": _redis}


def test_every_record_has_a_change_here():
    assert set(CHANGES) == set(RENDERED_BY)


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_the_roles_that_render_from_a_record_are_exactly_those_listed(name):
    config = load_stack_config("onebox")
    before = rendered(config)
    assert moved(before, rendered(config)) == set()  # rendering twice is the same: the test can see a change
    CHANGES[name](config)
    assert moved(before, rendered(config)) == RENDERED_BY[name]


def test_a_shard_more_moves_exactly_the_roles_shard_add_converges():
    config = load_stack_config("onebox")
    before = rendered(config)
    grown = config.model_copy(update={"postgres": config.postgres.model_copy(
        update={"physical_shards": config.postgres.physical_shards + 1})})
    shard_map_store(config, "onebox").save(shard_map_store(config, "onebox").load_or_create(config).grown())
    assert moved(before, rendered(grown)) - SHARD_ROLES == set()
    assert readers("shardmap") <= SHARD_ROLES  # the stored map grows (and shrinks) too
