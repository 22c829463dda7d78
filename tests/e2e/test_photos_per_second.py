"""The dashboard's headline graph counts real posts: photos posted through nginx move munin-node's
photos_per_second by exactly that many (a DERIVE field: Munin turns the totals into a rate)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import jpeg
from tests.monitoring.conftest import MuninNode

pytestmark = pytest.mark.onebox
PHOTOS = 7


def photos_total(node: MuninNode) -> int:
    lines, _ = node.fetch("photos_per_second")
    values = dict(line.split(".value ") for line in lines)
    return int(float(values["photos"]))


def test_photos_per_second_agrees_with_the_photos_posted_in_a_window(new_user, onebox):
    client, _, _ = new_user()
    box = onebox.config.onebox
    node = MuninNode(box.address, box.munin_node_port)
    try:
        before = photos_total(node)
        for i in range(PHOTOS):
            status, body = client.post_photo(jpeg(64, 48), f"window {i}")
            assert status == 201, body
        after = photos_total(node)
    finally:
        node.close()
    assert after - before == PHOTOS, (before, after)
