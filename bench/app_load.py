"""Mixed load on the app's JSON API: photo posts, likes and feed reads TOGETHER, with p50/p99.

    python bench/app_load.py --url http://127.0.0.1:8080      # the one-box, through nginx
    python bench/app_load.py --url ... --mode flood           # capacity: every client flat out
    python bench/app_load.py                                  # throwaway services + gunicorn here
    python bench/app_load.py --url ... --profile              # + where the app's CPU goes (py-spy)

Before the measured window (not timed): sign up users, make follows, post photos to like.
Each user signs up from its own loopback address (the app limits sign-ups per address), so the
URL must be on this machine.
Then for `--seconds` (default 60) one load-generator *process per kind* (post, like, feed;
asyncio + aiohttp, separate from the app's processes) runs at the same time:
- `paced` (default): each kind offered at its target rate as an open loop: request i is due at
  begin + i/rate and its latency counts from when it was due, so falling behind shows
  (no coordinated omission). In-flight requests per kind are capped (--inflight); a request
  that cannot start within its kind's p99 budget still starts, and its wait is counted.
- `flood`: --clients connections per kind, each as fast as it can: the box's capacity.
- `overload`: the goal mix (250 : 900 : 300) offered paced at 1x, 2x and 3x the capacity
  (--capacity req/s, or measured first by a flood of the same length), in one run. Per step:
  goodput, p50/p99 of the answered requests, refusals (503/429 with Retry-After) and how fast
  they came, errors by kind, and the CPU the load generator itself used (it shares the box).

Goals (issue 4, 2-core one-box): ≥ 250 posts/s and ≥ 900 likes/s together with p99 < 100 ms
and 0 errors; feed read p99 < 20 ms. The generator shares the 2 cores with the whole stack, so
figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.lib import pyspy  # noqa: E402

KINDS = ("post", "like", "feed")
# kind → (goal rate/s or None, goal p99 ms)
GOALS = {"post": (250, 100), "like": (900, 100), "feed": (None, 20)}
# The goal mix of issue 4 (250 posts : 900 likes : 300 feed reads), as shares of all requests.
GOAL_MIX = {"post": 250 / 1450, "like": 900 / 1450, "feed": 300 / 1450}
COOKIE = "photostack_session"
PREPARE_TRIES = 20  # attempts per set-up request the stack refuses with Retry-After


@dataclass
class Result:
    """What one kind's generator measured."""

    kind: str
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    refusals: list[float] = field(default_factory=list)  # latencies of 503/429 with Retry-After
    cpu_s: float = 0.0  # the generator process's own CPU time in the window

    def line(self) -> str:
        ok = len(self.latencies)
        rate = ok / self.seconds if self.seconds else 0.0
        lat = sorted(self.latencies) or [0.0]
        p50 = lat[len(lat) // 2] * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        goal_rate, goal_p99 = GOALS[self.kind]
        verdict = []
        if goal_rate:
            verdict.append(f"rate {'OK' if rate >= goal_rate * 0.99 else 'BELOW'} (≥{goal_rate}/s)")
        verdict.append(f"p99 {'OK' if p99 < goal_p99 else 'OVER'} (<{goal_p99} ms)")
        errors = sum(self.errors.values())
        detail = f" {dict(sorted(self.errors.items()))}" if errors else ""
        return (f"{self.kind:5s} {ok:7d} ok {errors:5d} err {rate:8.1f}/s  p50 {p50:7.2f} ms  "
                f"p99 {p99:7.2f} ms  {' '.join(verdict)}{detail}")


def small_jpeg() -> bytes:
    """A ~10 kB 320x240 JPEG (a phone thumbnail-sized upload)."""
    from PIL import Image

    out = io.BytesIO()
    Image.effect_mandelbrot((320, 240), (-2.0, -1.2, 1.0, 1.2), 100).convert("RGB").save(out, "JPEG", quality=80)
    return out.getvalue()


def photo_form(image: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("caption", "bench")
    form.add_field("image", image, filename="p.jpg", content_type="image/jpeg")
    return form


# aiohttp labels a bodyless POST application/octet-stream, which the API refuses (415): it takes
# JSON writes only (app/security.py).
JSON = {"Content-Type": "application/json"}


class PrepareError(RuntimeError):
    """The set-up before the window failed (the stack is not answering as it should)."""


@dataclass
class Fixture:
    """Users (session cookies) and photos made before the window."""

    cookies: list[str]
    photo_ids: list[str]


async def prepare(base: str, users: int, follows: int, photos_per_user: int) -> Fixture:
    """Sign up, follow, post: everything the window needs, outside the window."""
    tag = uuid.uuid4().hex[:6]
    names = [f"b{tag}_{i}" for i in range(users)]
    image = small_jpeg()
    limit = asyncio.Semaphore(16)
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(base, connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as http:

        async def politely(method: str, path: str, session=None, **kwargs) -> tuple[int, str, aiohttp.ClientResponse]:
            """(status, body, response) of a request, retried as long as the stack refuses it
            with Retry-After (a refused request was not done; sign-ups' password hashing
            queues past the app's budget when 16 come at once)."""
            form = kwargs.pop("form", None)
            for _ in range(PREPARE_TRIES):
                body = form() if form else None
                async with limit, (session or http).request(method, path, data=body, **kwargs) as resp:
                    text = await resp.text()
                    retry_after = resp.headers.get("Retry-After")
                if resp.status not in (429, 503) or not retry_after:
                    return resp.status, text, resp
                await asyncio.sleep(float(retry_after))
            return resp.status, text, resp

        async def signup(index: int, name: str) -> str:
            # Each user signs up from a loopback address of its own (all of 127/8 is this machine):
            # the app limits sign-ups per client address, as it should for real users.
            own = aiohttp.TCPConnector(local_addr=(f"127.{1 + index // 62500 % 250}.{index // 250 % 250}.{1 + index % 250}", 0))
            async with aiohttp.ClientSession(base, connector=own, cookie_jar=aiohttp.DummyCookieJar()) as alone:
                status, text, resp = await politely("POST", "/api/signup", session=alone,
                                                    json={"username": name, "password": "bench password"})
            if status != 201:
                raise PrepareError(f"sign-up failed: {status} {text[:200]!r}")
            return f"{COOKIE}={resp.cookies[COOKIE].value}"

        cookies = await asyncio.gather(*(signup(i, n) for i, n in enumerate(names)))
        rng = random.Random(1)

        async def follow(cookie: str, other: str) -> None:
            await politely("POST", f"/api/users/{other}/follow", headers={"Cookie": cookie, **JSON})

        await asyncio.gather(*(
            follow(cookie, other)
            for cookie, name in zip(cookies, names)
            for other in rng.sample([n for n in names if n != name], min(follows, users - 1))
        ))

        async def post(cookie: str) -> str:
            status, text, _ = await politely("POST", "/api/photos", form=lambda: photo_form(image), headers={"Cookie": cookie})
            if status != 201:
                raise PrepareError(f"photo post failed: {status} {text[:200]!r}")
            return json.loads(text)["id"]

        photo_ids = await asyncio.gather(*(post(c) for c in cookies for _ in range(photos_per_user)))
    return Fixture(list(cookies), list(photo_ids))


def request_for(kind: str, fixture: Fixture, image: bytes, rng: random.Random):
    """(method, path, cookie, body) of one request of a kind."""
    cookie = rng.choice(fixture.cookies)
    if kind == "post":
        return "POST", "/api/photos", cookie, photo_form(image), 201
    if kind == "like":
        return "POST", f"/api/photos/{rng.choice(fixture.photo_ids)}/like", cookie, None, 200
    return "GET", "/api/feed?limit=30", cookie, None, 200


async def generate(kind: str, base: str, fixture: Fixture, start_at: float, seconds: float,
                   rate: float | None, clients: int, inflight: int) -> Result:
    """One kind's load: paced at `rate` (open loop) or `clients` closed loops flat out."""
    result = Result(kind, seconds)
    image = small_jpeg()
    rng = random.Random(kind)
    connector = aiohttp.TCPConnector(limit=inflight if rate else clients)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout,
                                     cookie_jar=aiohttp.DummyCookieJar()) as http:

        async def one(due: float) -> None:
            method, path, cookie, body, expect = request_for(kind, fixture, image, rng)
            headers = {"Cookie": cookie, **(JSON if method == "POST" and body is None else {})}
            try:
                async with http.request(method, path, data=body, headers=headers) as resp:
                    await resp.read()
                    status, retry_after = resp.status, resp.headers.get("Retry-After")
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                result.errors[type(exc).__name__] = result.errors.get(type(exc).__name__, 0) + 1
                return
            if status == expect:
                nonlocal last_done
                last_done = time.perf_counter()
                result.latencies.append(last_done - due)
            elif status in (429, 503) and retry_after:
                result.refusals.append(time.perf_counter() - due)
            else:
                result.errors[str(status)] = result.errors.get(str(status), 0) + 1

        # Warm the connections up (outside the window): the window measures requests, not handshakes.
        await asyncio.gather(*(http.get("/health") for _ in range(min(inflight, 32))), return_exceptions=True)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu_begin = time.process_time()
        begin = last_done = time.perf_counter()
        deadline = begin + seconds
        if rate:
            tasks = set()
            i = 0
            while True:
                due = begin + i / rate
                if due >= deadline:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(one(due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            if tasks:
                await asyncio.wait(tasks)
            # Requests due in the window, per second it took to finish them (falling behind shows).
            result.seconds = max(seconds, last_done - begin)
        else:

            async def loop() -> None:
                while time.perf_counter() < deadline:
                    await one(time.perf_counter())

            await asyncio.gather(*(loop() for _ in range(clients)))
            result.seconds = time.perf_counter() - begin
    result.cpu_s = time.process_time() - cpu_begin
    return result


def run_kind(args: tuple) -> Result:
    """Process entry point: one kind's generator in its own event loop."""
    return asyncio.run(generate(*args))


def mixed(base: str, fixture: Fixture, seconds: float, rates: dict[str, float | None], clients: int,
          inflight: int, profile_pids: list[int] = (), quiet: bool = False) -> list[Result]:
    """Every kind at once, each in its own process, all starting at the same wall-clock moment;
    with profile_pids, py-spy records those processes (and their children) inside the window
    and the summary is printed after the results."""
    start_at = time.time() + 3.0  # time for the processes to start and warm their connections
    jobs = [(kind, base, fixture, start_at, seconds, rates.get(kind), clients, inflight) for kind in KINDS]
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        pending = pool.map_async(run_kind, jobs)
        spies = []
        if profile_pids:
            time.sleep(max(0.0, start_at + min(5.0, seconds / 4) - time.time()))  # past the ramp-up
            outputs = [Path(tempfile.mkdtemp(prefix="app_load-")) / f"{pid}.raw" for pid in profile_pids]
            spies = [(pyspy.start_recording(pid, seconds / 2, out), out) for pid, out in zip(profile_pids, outputs)]
        results = pending.get()
    stacks = []
    for spy, out in spies:
        _, err = spy.communicate()
        if not out.is_file():
            raise SystemExit(f"app_load: py-spy failed: {err.decode(errors='replace').strip()[-300:]}")
        stacks += pyspy.parse(out)
    for result in results if not quiet else ():
        print("  " + result.line())
    if stacks:
        print("profile (py-spy --gil, gunicorn workers, middle of the window):")
        print(pyspy.summarize(stacks, 15))
    return results


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, in ms (0 when there are none)."""
    ordered = sorted(values) or [0.0]
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def overload_step(label: str, results: list[Result], seconds: float, base_goodput: float | None) -> float:
    """Print one step of the overload run; its goodput (answered requests per second)."""
    answered = [lat for r in results for lat in r.latencies]
    refused = [lat for r in results for lat in r.refusals]
    goodput = len(answered) / seconds
    share = f" ({goodput / base_goodput * 100:.0f}% of 1x)" if base_goodput else ""
    errors = {f"{r.kind}:{k}": v for r in results for k, v in sorted(r.errors.items())}
    cpu = sum(r.cpu_s for r in results) / seconds
    print(f"  {label}: goodput {goodput:7.1f}/s{share}  answered p50 {percentile(answered, 0.5):6.1f} ms "
          f"p99 {percentile(answered, 0.99):6.1f} ms | refused {len(refused)} (p99 {percentile(refused, 0.99):.1f} ms, "
          f"max {max(refused, default=0) * 1000:.1f} ms) | errors {sum(errors.values())} {errors or ''} | "
          f"generator CPU {cpu:.2f} cores")
    for result in results:
        print(f"      {result.kind:5s} {len(result.latencies) / seconds:7.1f}/s answered, "
              f"{len(result.refusals) / seconds:7.1f}/s refused, p99 {percentile(result.latencies, 0.99):6.1f} ms")
    return goodput


def overload(base: str, fixture: Fixture, seconds: float, capacity: float | None, clients: int, inflight: int) -> None:
    """The goal mix at 1x, 2x and 3x the capacity (measured by a flood first unless given)."""
    if not capacity:
        flood = mixed(base, fixture, seconds, {}, clients, inflight, quiet=True)
        capacity = sum(len(r.latencies) for r in flood) / seconds
        print(f"  capacity (flood, {clients} connections per kind): {capacity:.0f} req/s")
    base_goodput = None
    for multiple in (1, 2, 3):
        rates = {kind: capacity * multiple * share for kind, share in GOAL_MIX.items()}
        results = mixed(base, fixture, seconds, rates, clients, inflight, quiet=True)
        goodput = overload_step(f"{multiple}x = {capacity * multiple:.0f} req/s offered", results, seconds, base_goodput)
        base_goodput = base_goodput or goodput


def app_pids(local_pid: int | None) -> list[int]:
    """The gunicorn masters to profile: the local one, or every one-box app instance's."""
    if local_pid:
        return [local_pid]
    pidfiles = sorted(Path("/run/photostack").glob("app-*.pid"))
    if not pidfiles:
        raise SystemExit("app_load: --profile: no /run/photostack/app-*.pid (profile on the app host)")
    return [int(p.read_text().split()[0]) for p in pidfiles]


def local_stack_and_gunicorn(workers: int, threads: int):
    """Throwaway services (tests/app_services.py) + gunicorn on a free 557xx port."""
    from contextlib import ExitStack

    from tests.app_services import free_ports, running_stack, wait_port

    stack_cm = ExitStack()
    stack_cm.enter_context(running_stack())
    port = free_ports(1)[0]
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "app.wsgi:application", "-k", "gthread", "-w", str(workers),
         "--threads", str(threads), "-b", f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=REPO, env=dict(os.environ), start_new_session=True,
    )
    stack_cm.callback(lambda: (gunicorn.kill(), gunicorn.wait()))
    wait_port(port, gunicorn, 30, "gunicorn")
    return f"http://127.0.0.1:{port}", stack_cm, gunicorn.pid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="base URL of a running stack (default: throwaway services + gunicorn here)")
    parser.add_argument("--mode", choices=("paced", "flood", "both", "overload"), default="paced")
    parser.add_argument("--capacity", type=float, help="overload: the 1x rate in req/s (default: measure by a flood)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the measured window")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--follows", type=int, default=20, help="follows per user (feed fan-out width)")
    parser.add_argument("--photos-per-user", type=int, default=3, help="photos posted before the window")
    parser.add_argument("--post-rate", type=float, default=250.0)
    parser.add_argument("--like-rate", type=float, default=900.0)
    parser.add_argument("--feed-rate", type=float, default=300.0)
    parser.add_argument("--inflight", type=int, default=64, help="paced: connections per kind")
    parser.add_argument("--clients", type=int, default=8, help="flood: connections per kind")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (local)")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker (local)")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the gunicorn workers during the window (root; one-box or local)")
    args = parser.parse_args()
    cleanup, local_pid = None, None
    base = args.url
    if not base:
        base, cleanup, local_pid = local_stack_and_gunicorn(args.workers, args.threads)
    try:
        started = time.monotonic()
        fixture = asyncio.run(prepare(base, args.users, args.follows, args.photos_per_user))
        print(f"app_load: {base} users={len(fixture.cookies)} photos={len(fixture.photo_ids)} "
              f"window={args.seconds:.0f}s (prepared in {time.monotonic() - started:.1f}s)")
        paced = {"post": args.post_rate, "like": args.like_rate, "feed": args.feed_rate}
        if args.mode == "overload":
            print(f"overload (the goal mix 250:900:300 at 1x, 2x, 3x capacity, {args.seconds:.0f}s each):")
            overload(base, fixture, args.seconds, args.capacity, args.clients, args.inflight)
        for mode in {"both": ("paced", "flood"), "paced": ("paced",), "flood": ("flood",), "overload": ()}[args.mode]:
            if mode == "paced":
                print(f"paced (posts {args.post_rate:.0f}/s + likes {args.like_rate:.0f}/s + "
                      f"feed reads {args.feed_rate:.0f}/s offered together):")
            else:
                print(f"flood ({args.clients} connections per kind, together):")
            mixed(base, fixture, args.seconds, paced if mode == "paced" else {}, args.clients, args.inflight,
                  app_pids(local_pid) if args.profile else [])
    except (PrepareError, aiohttp.ClientError, OSError) as exc:
        print(f"app_load: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if cleanup is not None:
            cleanup.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
