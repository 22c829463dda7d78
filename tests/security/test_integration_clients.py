"""The bearer-token clients (issue 10): Pingdom and Sentry's Web API refuse a base URL that is
not https, and never send the token on to another origin when redirected (urllib's default is
to copy `Authorization` to wherever `Location` points). Against local HTTPS servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.pingdom import PingdomClient, PingdomError
from monitoring.integrations.sentry_releases import SentryApiError, SentryReleases
from tests.fakes.base import JsonHandler, LocalServer

TOKEN = "bearer-canary-token"


class _Handler(JsonHandler):
    """`/moved/<rest>` redirects to the server's `target` + `/<rest>`; anything else is recorded
    and answered `{"checks": []}`."""

    def _answer(self) -> None:
        fake: Hop = self.fake
        self.read_body()
        if self.path.startswith("/moved/"):
            self.send_response(fake.status)
            self.send_header("Location", fake.target + self.path.removeprefix("/moved"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with fake.lock:
            fake.seen.append((self.command, self.path, self.headers.get("Authorization")))
        self.send_json(201 if self.command == "POST" else 200, {"checks": []})

    do_GET = do_POST = _answer  # noqa: N815 - http.server naming


class Hop(LocalServer):
    handler = _Handler

    def __init__(self, ssl_context, status: int = 302):
        super().__init__(ssl_context=ssl_context)
        self.status = status
        self.target = ""
        self.seen: list[tuple[str, str, str | None]] = []


@pytest.fixture
def hops(test_certificates) -> Iterator[tuple[Hop, Hop]]:
    """Two HTTPS servers on different ports: two origins."""
    with Hop(test_certificates.server_context()) as first, Hop(test_certificates.server_context()) as second:
        yield first, second


@pytest.mark.parametrize("url", ["http://api.pingdom.com/api/3.1", "ftp://x/y", "https:///no-host"])
def test_a_base_url_that_is_not_https_is_refused(url):
    with pytest.raises(PingdomError, match="must be https"):
        PingdomClient(TOKEN, base_url=url)
    with pytest.raises(SentryApiError, match="must be https"):
        SentryReleases(url, TOKEN, "photostack")


def test_pingdom_token_does_not_follow_a_redirect_to_another_origin(hops, test_certificates):
    first, second = hops
    first.target = second.url
    client = PingdomClient(TOKEN, base_url=first.url + "/moved", ca_bundle=str(test_certificates.ca_bundle))
    with pytest.raises(PingdomError, match="another origin") as raised:
        client.checks()
    assert raised.value.status == 302 and TOKEN not in str(raised.value)
    assert second.seen == []


def test_sentry_token_does_not_follow_a_redirect_to_another_origin(hops, test_certificates):
    first, second = hops
    first.target = second.url
    client = SentryReleases(first.url + "/moved", TOKEN, "photostack", ca_bundle=str(test_certificates.ca_bundle))
    with pytest.raises(SentryApiError, match="another origin"):
        client.create_release("1.0", ["photostack-onebox"])
    assert second.seen == []


def test_a_redirect_within_the_origin_is_still_followed(hops, test_certificates):
    first, _ = hops
    first.target = first.url
    client = PingdomClient(TOKEN, base_url=first.url + "/moved", ca_bundle=str(test_certificates.ca_bundle))
    assert client.checks() == []
    assert first.seen == [("GET", "/checks", f"Bearer {TOKEN}")]
