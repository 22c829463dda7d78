"""Load on the app's JSON API: posts/s, likes/s, feed reads, with p50/p99 latencies.

    python bench/app_load.py                                  # throwaway services + gunicorn here
    python bench/app_load.py --url http://127.0.0.1:8080      # a deployed stack (one-box nginx)
    python bench/app_load.py --mode paced                     # only: offer the target rates, read p99

Modes: `flood` (every client as fast as it can: capacity) and `paced` (the target rates
offered, latency from the scheduled start); `both` (default) runs flood then paced.

Targets (issue 4, 2-core box): ≥ 250 posts/s and ≥ 900 likes/s with p99 < 100 ms; feed read
p99 < 20 ms. The load generator runs on the same box (and is Python), so figures are a floor.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGETS = {"post": (250, 100), "like": (900, 100), "feed": (None, 20)}
# --paced offers each phase at its target rate (feed reads: a rate well inside capacity).
PACED_RATES = {"post": 250.0, "like": 900.0, "feed": 300.0}


class Session:
    """One keep-alive HTTP connection with a session cookie."""

    def __init__(self, base: str) -> None:
        parsed = urllib.parse.urlsplit(base)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        self.cookie = ""

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None):
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):  # one reconnect if the server closed the keep-alive connection
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt == 2:
                    raise
        for value in response.headers.get_all("Set-Cookie") or []:
            if value.startswith("photostack_session="):
                self.cookie = value.split(";", 1)[0]
        return response.status, data

    def json(self, method: str, path: str, payload: dict):
        return self.request(method, path, json.dumps(payload).encode(), "application/json")


def multipart(image: bytes, caption: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"caption\"\r\n\r\n{caption}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n"
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def small_jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.effect_noise((320, 240), 64).convert("RGB").save(out, "JPEG", quality=80)
    return out.getvalue()


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        ok = len(self.latencies)
        rate = ok / self.seconds if self.seconds else 0.0
        lat = sorted(self.latencies) or [0.0]
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        target_rate, target_p99 = TARGETS.get(self.name, (None, None))
        verdict = []
        if target_rate:
            verdict.append(f"rate {'OK' if rate >= target_rate else 'BELOW'} (≥{target_rate}/s)")
        if target_p99:
            verdict.append(f"p99 {'OK' if p99 < target_p99 else 'OVER'} (<{target_p99} ms)")
        return (f"{self.name:6s} {ok:7d} ok {self.errors:5d} err {rate:9.1f}/s  p50 {p50:7.2f} ms  "
                f"p99 {p99:7.2f} ms  {' '.join(verdict)}")


def run_phase(name: str, sessions: list[Session], seconds: float, action, rate: float | None) -> Phase:
    """Each session in its own thread calls action(session) until the time is up: as fast as
    it can (rate None: the box's capacity), or paced so all together offer `rate` requests/s.
    Paced latency counts from the scheduled start, so falling behind shows (no coordinated
    omission)."""
    phase = Phase(name)
    lock = threading.Lock()
    begin = time.perf_counter()
    deadline = begin + seconds
    interval = len(sessions) / rate if rate else 0.0

    def loop(index_session) -> None:
        index, session = index_session
        rng = random.Random()
        local, errors = [], 0
        scheduled = begin + interval * index / len(sessions)
        while True:
            now = time.perf_counter()
            if rate:
                if scheduled > now:
                    time.sleep(scheduled - now)
                start = scheduled
                scheduled += interval
            else:
                start = now
            if start >= deadline:
                break
            try:
                ok = action(session, rng)
            except OSError:
                ok = False
            if ok:
                local.append(time.perf_counter() - start)
            else:
                errors += 1
        with lock:
            phase.latencies.extend(local)
            phase.errors += errors

    started = time.monotonic()
    with ThreadPoolExecutor(len(sessions)) as pool:
        list(pool.map(loop, enumerate(sessions)))
    # Paced: requests started inside the window, per second of window (stragglers finish after).
    phase.seconds = seconds if rate else time.monotonic() - started
    return phase


def bench(base: str, users: int, concurrency: int, seconds: float, follows: int, paced: bool) -> list[Phase]:
    tag = uuid.uuid4().hex[:6]
    sessions = [Session(base) for _ in range(users)]
    names = [f"b{tag}_{i}" for i in range(users)]

    def signup(pair):
        session, name = pair
        status, data = session.json("POST", "/api/signup", {"username": name, "password": "bench password"})
        if status != 201:
            raise SystemExit(f"sign-up failed: {status} {data[:200]!r}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(signup, zip(sessions, names)))
    rng = random.Random(1)
    for session, name in zip(sessions, names):
        for other in rng.sample([n for n in names if n != name], min(follows, users - 1)):
            session.request("POST", f"/api/users/{other}/follow")

    active = sessions[:concurrency]
    image = small_jpeg()
    photo_ids: list[str] = []
    ids_lock = threading.Lock()

    def post(session, _rng) -> bool:
        body, content_type = multipart(image, "bench")
        status, data = session.request("POST", "/api/photos", body, content_type)
        if status != 201:
            return False
        with ids_lock:
            photo_ids.append(json.loads(data)["id"])
        return True

    def like(session, rng) -> bool:
        status, _ = session.request("POST", f"/api/photos/{rng.choice(photo_ids)}/like")
        return status == 200

    def feed(session, _rng) -> bool:
        status, _ = session.request("GET", "/api/feed?limit=30")
        return status == 200

    rates = PACED_RATES if paced else {}
    phases = [run_phase("post", active, seconds, post, rates.get("post"))]
    time.sleep(min(5.0, seconds))  # let thumbnails and fan-out drain before reading
    phases.append(run_phase("like", active, seconds, like, rates.get("like")))
    phases.append(run_phase("feed", active, seconds, feed, rates.get("feed")))
    return phases


def local_stack_and_gunicorn(workers: int, threads: int):
    """Throwaway services (tests/app_services.py) + gunicorn on a free 557xx port."""
    from contextlib import ExitStack

    from tests.app_services import free_ports, running_stack, wait_port

    stack_cm = ExitStack()
    stack = stack_cm.enter_context(running_stack())
    port = free_ports(1)[0]
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "app.wsgi:application", "-k", "gthread", "-w", str(workers),
         "--threads", str(threads), "-b", f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=REPO, env={**os.environ, "PHOTOSTACK_MAX_UPLOAD_BYTES": str(10 * 1024 * 1024)}, start_new_session=True,
    )
    stack_cm.callback(lambda: (gunicorn.kill(), gunicorn.wait()))
    wait_port(port, gunicorn, 30, "gunicorn")
    return f"http://127.0.0.1:{port}", stack_cm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="base URL of a running stack (default: boot throwaway services + gunicorn here)")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0, help="per phase")
    parser.add_argument("--follows", type=int, default=10)
    parser.add_argument("--mode", choices=("both", "flood", "paced"), default="both")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (local)")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker (local)")
    args = parser.parse_args()
    cleanup = None
    base = args.url
    if not base:
        base, cleanup = local_stack_and_gunicorn(args.workers, args.threads)
    try:
        concurrency = min(args.concurrency, args.users)
        print(f"app_load: {base} users={args.users} concurrency={concurrency} seconds/phase={args.seconds}"
              f"{' (local: load generator shares the CPUs)' if cleanup else ''}")
        for paced in {"both": (False, True), "flood": (False,), "paced": (True,)}[args.mode]:
            print("paced at target rates:" if paced else "flood (capacity):")
            for phase in bench(base, args.users, concurrency, args.seconds, args.follows, paced):
                print("  " + phase.line())
    except (ConnectionError, socket.timeout) as exc:
        print(f"app_load: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if cleanup is not None:
            cleanup.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
