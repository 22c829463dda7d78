"""A local Sentry ingest endpoint: `POST /api/<project>/envelope/` (gzip or plain envelopes).

Checks the `X-Sentry-Auth` key against the DSN's public key, parses the envelope (header line,
then items with an optional `length`) and records it. `events` lists the payloads of `event`
items; `items(type)` any other type (transaction, log, session, ...).
"""

from __future__ import annotations

import gzip
import json
import re
from typing import Any

from tests.fakes.base import JsonHandler, LocalServer


def parse_envelope(data: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    """Split an envelope into its header and (item header, payload) pairs."""
    header_line, _, rest = data.partition(b"\n")
    items = []
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        item_header = json.loads(item_line)
        if "length" in item_header:
            length = item_header["length"]
            payload, rest = rest[:length], rest[length:]
            rest = rest[1:] if rest.startswith(b"\n") else rest
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((item_header, payload))
    return json.loads(header_line), items


class _Handler(JsonHandler):
    def do_POST(self) -> None:  # noqa: N802
        fake: SentryServer = self.fake
        body = self.read_body()
        match = re.fullmatch(r"/api/(\d+)/envelope/", self.path.split("?")[0])
        if not match or match.group(1) != fake.project:
            self.send_json(404, {"detail": "unknown project"})
            return
        auth = self.headers.get("X-Sentry-Auth", "")
        if f"sentry_key={fake.key}" not in auth:
            self.send_json(401, {"detail": "invalid api key"})
            return
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        elif self.headers.get("Content-Encoding") not in (None, "", "identity"):
            self.send_json(415, {"detail": "unsupported encoding"})
            return
        header, items = parse_envelope(body)
        with fake.lock:
            fake.envelopes.append((header, items))
        self.send_json(200, {"id": header.get("event_id")})


class SentryServer(LocalServer):
    """The fake Sentry; its `dsn` is what the SDK is initialised with."""

    handler = _Handler

    def __init__(self, key: str = "publickey", project: str = "1", port: int = 0):
        super().__init__(port=port)
        self.key = key
        self.project = project
        self.envelopes: list[tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]] = []

    @property
    def dsn(self) -> str:
        return f"http://{self.key}@127.0.0.1:{self.port}/{self.project}"

    def items(self, item_type: str) -> list[dict[str, Any]]:
        """Decoded JSON payloads of every received item of `item_type`."""
        with self.lock:
            return [json.loads(p) for _, items in self.envelopes for h, p in items if h.get("type") == item_type]

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.items("event")
