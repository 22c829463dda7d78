"""App load for the resharding drill and bench/reshard.py: users on chosen logical shards post
photos, like each other's photos and read their feeds through nginx, while logical shards move.

A photo or a like counts as acknowledged once its 201/200 answer arrived. A write answered 503
(its logical shard's cut-over) is retried after Retry-After; its logical shard's pause is the
time from its first 503 to the next acknowledged write. Any read that is not 200, and any write
answered other than 200/201/503, is a failure.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from app.shards import username_shard
from ops.stack import Stack
from tests.drills.appclient import ApiClient
from tests.drills.faults import nginx_port


def usernames_on(logical: list[int], logical_shards: int, prefix: str = "rs") -> dict[int, str]:
    """One fresh username hashing to each of the logical shards (usernames place users)."""
    found: dict[int, str] = {}
    while len(found) < len(logical):
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        shard = username_shard(name, logical_shards)
        if shard in logical and shard not in found:
            found[shard] = name
    return found


@dataclass
class Writer:
    """One user's loop and what it saw."""

    client: ApiClient
    logical: int
    photos: list[int] = field(default_factory=list)  # acknowledged photo ids
    likes: set[tuple[int, int]] = field(default_factory=set)  # acknowledged (photo, liker)
    pauses: list[float] = field(default_factory=list)  # seconds from a first 503 to the next ack
    failures: list[str] = field(default_factory=list)
    reads: int = 0
    refused: int = 0  # 503s


class ReshardLoad:
    """A thread per user: post, like a random acknowledged photo, read the feed and a photo."""

    def __init__(self, stack: Stack, logical: list[int], max_seconds: float = 300.0):
        port = nginx_port(stack)
        names = usernames_on(logical, stack.config.postgres.logical_shards)
        self.writers = []
        for shard, name in names.items():
            client = ApiClient(port)
            client.username = name
            status, body = client.json("POST", "/api/signup", {"username": name, "password": client.password})
            assert status == 201, body
            client.user_id = int(body["id"])
            self.writers.append(Writer(client, shard))
        self.max_seconds = max_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> ReshardLoad:
        self._threads = [threading.Thread(target=self._loop, args=(w,), daemon=True) for w in self.writers]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def acked_photos(self) -> list[int]:
        return [p for w in self.writers for p in w.photos]

    def _write(self, writer: Writer, send, ok: tuple[int, ...]) -> dict | None:
        """Send a write until it is acknowledged (retrying 503s); None once stopped."""
        first_refusal = None
        while not self._stop.is_set():
            status, body = send()
            if status in ok:
                if first_refusal is not None:
                    writer.pauses.append(time.monotonic() - first_refusal)
                return body
            if status != 503:
                writer.failures.append(f"write {status}: {body}")
                return None
            writer.refused += 1
            first_refusal = first_refusal or time.monotonic()
            time.sleep(0.1)  # shorter than Retry-After: the pause is measured to ~0.1 s
        return None

    def _read(self, writer: Writer, path: str) -> None:
        status, body = writer.client.call("GET", path)
        writer.reads += 1
        if status != 200:
            writer.failures.append(f"GET {path} {status}: {body}")

    def _loop(self, writer: Writer) -> None:
        deadline = time.monotonic() + self.max_seconds
        rng = random.Random(writer.client.user_id)
        while not self._stop.is_set() and time.monotonic() < deadline:
            body = self._write(writer, writer.client.post_photo, (201,))
            if body is not None:
                writer.photos.append(int(body["id"]))
            pool = self.acked_photos()
            if pool:
                photo = rng.choice(pool)
                if self._write(writer, lambda: writer.client.call("POST", f"/api/photos/{photo}/like"), (200,)) is not None:
                    writer.likes.add((photo, writer.client.user_id))
                self._read(writer, f"/api/photos/{photo}")
            self._read(writer, "/api/feed?limit=20")
            time.sleep(0.05)


def grown_config(path: Path, physical: int) -> Path:
    """A copy of the one-box config stating `physical` physical shards (the desired count)."""
    from infra.config import stack_file

    text = stack_file("onebox").read_text()
    current = next(line for line in text.splitlines() if "physicalShards:" in line)
    path.write_text(text.replace(current, current.split(":")[0] + f": {physical}"))
    return path
