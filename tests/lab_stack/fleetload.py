"""Users' load on the lab through its load balancer, recording every acknowledged write.

Each user is a thread with their own logged-in client (HTTPS to the load balancer stand-in, as a
browser reaches the ALB). Users post photos, like each other's photos and read their feeds in a
fixed mix (or only read them: READS), paced, until stopped — at most `max_seconds` long and `max_requests` in all. Every
request is timed and kept (kind, start, seconds, status), so a drill can ask how many failed,
which took longer than their route's budget, and when; every acknowledged post (201) and like
(200) is kept, so `lost` can check each is still there after the fault.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.e2e.conftest import Client, jpeg

MIX = ("post", "like", "feed", "like", "feed", "like", "feed")
READS = ("feed",)  # GETs only: what a deploy must serve without a single failure
PHOTO = jpeg(64, 48)  # small: the drills measure the fleet, not upload bandwidth


@dataclass(frozen=True)
class Sample:
    kind: str  # post, like, feed
    started: float  # time.monotonic()
    seconds: float
    status: int  # 0: no answer (the error says why)
    error: str = ""
    photo: str = ""  # the photo posted or liked (its id names its shard), "" for a feed read

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class LoadReport:
    samples: list[Sample] = field(default_factory=list)
    posts: list[str] = field(default_factory=list)  # photo ids acknowledged (201)
    posters: dict[str, str] = field(default_factory=dict)  # photo id acknowledged -> the user who posted it
    likes: dict[str, set[str]] = field(default_factory=dict)  # photo id -> users whose like was acknowledged

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.started < end]

    @staticmethod
    def failed(samples: list[Sample]) -> list[Sample]:
        return [s for s in samples if not s.ok]

    def describe(self, samples: list[Sample] | None = None) -> str:
        samples = self.samples if samples is None else samples
        failed = self.failed(samples)
        kinds: dict[str, int] = {}
        for s in failed:
            key = f"{s.kind} {s.status or s.error}"
            kinds[key] = kinds.get(key, 0) + 1
        slowest = max((s.seconds for s in samples), default=0.0)
        return (f"{len(samples)} requests, {len(failed)} failed ({len(failed) / max(1, len(samples)):.2%}: "
                f"{kinds or 'none'}), slowest {slowest:.2f} s")


Users = list[tuple[str, Client]]  # (username, their logged-in client)


def sign_up(make_client: Callable[[], Client], count: int, shard_of: Callable[[str], int] = lambda _: 0,
            shards: int = 1) -> Users:
    """`count` new users, each with a logged-in client (from `make_client`: in the lab, each from
    an address of their own, as real users are). A user lives on the physical shard `shard_of`
    their name; user i gets a name on shard i % `shards`, so every shard holds users (and their
    photos and likes) whatever names come up."""
    users = []
    for index in range(count):
        name = f"drill{index}_{uuid.uuid4().hex[:10]}"
        while shard_of(name) != index % shards:  # a name hashes to any shard: a few tries find one
            name = f"drill{index}_{uuid.uuid4().hex[:10]}"
        client = make_client()
        status, body = client.json("POST", "/api/signup", {"username": name, "password": "drill password"})
        assert status == 201, body
        users.append((name, client))
    return users


class FleetLoad:
    """Each of `users` doing `mix` (MIX, or READS) every `pace_s`."""

    def __init__(self, users: Users, pace_s: float = 0.1, max_seconds: float = 180.0,
                 max_requests: int = 20_000, mix: tuple[str, ...] = MIX) -> None:
        self.users, self.pace_s, self.mix = users, pace_s, mix
        self.max_seconds, self.max_requests = max_seconds, max_requests
        self.report = LoadReport()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = 0.0

    def start(self) -> FleetLoad:
        """Each user posts a photo to be liked (when the mix likes), then their loops start."""
        for name, client in self.users if "like" in self.mix else ():
            status, photo = client.post_photo(PHOTO, "first")
            assert status == 201, photo
            self.report.posts.append(photo["id"])
            self.report.posters[photo["id"]] = name
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(len(self.users))]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadReport:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        return self.report

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        """Block until `count` more requests finished (the load really ran meanwhile); bounded."""
        start, deadline = len(self.report.samples), time.monotonic() + timeout
        while len(self.report.samples) - start < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the load finished {len(self.report.samples) - start} of {count} requests "
                                     f"in {timeout:.0f} s")
            time.sleep(0.05)

    def _done(self) -> bool:
        return (self._stop.is_set() or len(self.report.samples) >= self.max_requests
                or time.monotonic() - self._started > self.max_seconds)

    def _loop(self, index: int) -> None:
        name, client = self.users[index]
        chooser = random.Random(index)
        step = index
        while not self._done():
            kind = self.mix[step % len(self.mix)]
            step += 1
            started = time.monotonic()
            status, error, photo_id = self._one(client, kind, chooser)
            sample = Sample(kind, started, time.monotonic() - started, status, error, photo_id)
            with self._lock:
                self.report.samples.append(sample)
                if sample.ok and kind == "post":
                    self.report.posts.append(photo_id)
                    self.report.posters[photo_id] = name
                elif sample.ok and kind == "like":
                    self.report.likes.setdefault(photo_id, set()).add(name)
            self._stop.wait(self.pace_s)

    def _one(self, client: Client, kind: str, chooser: random.Random) -> tuple[int, str, str]:
        """(status, error, photo id) of one request of `kind`; status 0 when no answer came."""
        try:
            if kind == "post":
                status, body = client.post_photo(PHOTO, "drill")
                return status, "", str(body.get("id", ""))
            if kind == "like":
                with self._lock:
                    photo_id = chooser.choice(self.report.posts)
                status, _ = client.request("POST", f"/api/photos/{photo_id}/like")
                return status, "", photo_id
            status, _ = client.request("GET", "/api/feed")
            return status, "", ""
        except (OSError, http.client.HTTPException) as exc:  # no answer: reset, refused, timed out, cut short
            return 0, type(exc).__name__, ""


def lost(client: Client, report: LoadReport) -> list[str]:
    """Acknowledged writes not found now: each acknowledged photo must answer, and each photo's
    like count must hold every user whose like was acknowledged (likes are idempotent: a like
    that failed may have been stored too, so more is fine)."""
    missing = []
    for photo_id in report.posts:
        status, body = client.json("GET", f"/api/photos/{photo_id}")
        if status != 200:
            missing.append(f"photo {photo_id}: HTTP {status}")
        elif body.get("like_count", 0) < len(report.likes.get(photo_id, ())):
            missing.append(f"photo {photo_id}: {body.get('like_count')} likes, "
                           f"{len(report.likes[photo_id])} acknowledged")
    return missing
