"""A Memcached that does not answer puts the app's cache in its cooldown at the first failed
read: the cache is skipped (all misses) instead of every read waiting out the socket timeout.
A dead host answers nothing at all, so with pymemcache's `ignore_exc` (reads' errors silently
turned into misses) each feed read paid the timeout, and a fleet drill saw 23 % of requests fail
while the Memcached host was gone."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from app.clients import fail_open_cache


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A loopback port whose listener never accepts: connections complete in the kernel's
    backlog and then nothing is ever answered, as from a hung server."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@pytest.fixture
def refused_server() -> str:
    """A loopback port nothing listens on (a killed server)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{probe.getsockname()[1]}"
    probe.close()
    return address


@pytest.mark.parametrize("server", ["silent_server", "refused_server"])
def test_a_failed_read_is_a_miss_and_starts_the_cooldown(server: str, request: pytest.FixtureRequest) -> None:
    cache = fail_open_cache([request.getfixturevalue(server)])
    assert cache.get_many(["photo:1", "photo:2"]) == {}
    assert not cache._available()  # the next reads skip the cache instead of waiting again
    cache.set_many({"photo:1": "{}"}, expire=60)  # skipped, not raised
    cache.delete("photo:1")
