"""Bounded HTTP load through the one-box nginx (loopback only), counting every failed request.

Each client thread keeps one keep-alive connection and loops over `targets`: a path to GET, or
"POST <path>" (empty body). A request counts as failed when it gets no answer or an answer other
than 200. Like any HTTP client, a GET whose *reused* keep-alive connection turns out closed
before any answer byte is sent again once on a new connection (RFC 9110 §9.2.2: idempotent
requests may be retried); that is not a failure of the server, and is counted apart as
`reconnects`. A POST is never sent twice: any failure of it counts.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    ok: int = 0
    failed: int = 0
    reconnects: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # "<target>: <error>" -> count
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.ok + self.failed

    @property
    def failed_ratio(self) -> float:
        return self.failed / self.total if self.total else 0.0

    def failed_targets(self) -> set[str]:
        return {key.split(": ", 1)[0] for key in self.errors}

    def describe(self) -> str:
        return (f"{self.total} requests in {self.seconds:.1f}s, {self.failed} failed ({self.failed_ratio:.3%}), "
                f"{self.reconnects} keep-alive reconnects, errors {self.errors or 'none'}")


class HttpLoad:
    """`clients` threads requesting `targets` from host:port until stopped, at most `max_requests`
    in all and at most `max_seconds` long."""

    def __init__(self, port: int, targets: list[str], clients: int = 4, max_requests: int = 200_000,
                 max_seconds: float = 120.0, host: str = "127.0.0.1", headers: dict[str, str] | None = None):
        self.host, self.port, self.targets, self.clients = host, port, targets, clients
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.headers = {"Host": "photostack.localhost", **(headers or {})}
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = 0.0

    def start(self) -> HttpLoad:
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=40)
        self.result.seconds = time.monotonic() - self._started
        return self.result

    def wait_for_more(self, count: int, timeout: float = 60.0) -> None:
        """Block until `count` more requests have completed (answered or failed): the load really
        ran over what happens meanwhile. Bounded: fails after `timeout` seconds."""
        with self._lock:
            start = self.result.total
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                done = self.result.total - start
            if done >= count:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"load completed {done} of {count} requests within {timeout:.0f}s")
            time.sleep(0.02)

    def _count(self, target: str, ok: bool, error: str = "", reconnect: bool = False) -> None:
        with self._lock:
            if reconnect:
                self.result.reconnects += 1
            if ok:
                self.result.ok += 1
            else:
                self.result.failed += 1
                key = f"{target}: {error}"
                self.result.errors[key] = self.result.errors.get(key, 0) + 1

    def _done(self) -> bool:
        return (self._stop.is_set() or self.result.total >= self.max_requests
                or time.monotonic() - self._started > self.max_seconds)

    def _client(self, index: int) -> None:
        conn: http.client.HTTPConnection | None = None
        n = index
        while not self._done():
            target = self.targets[n % len(self.targets)]
            method, path = target.split(" ", 1) if " " in target else ("GET", target)
            n += 1
            reconnect = False
            for attempt in (1, 2):
                reused = conn is not None
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                try:
                    conn.request(method, path, body=b"" if method != "GET" else None, headers=self.headers)
                    response = conn.getresponse()
                    response.read()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                    conn.close()
                    conn = None
                    if reused and attempt == 1 and method == "GET":
                        reconnect = True
                        continue
                    self._count(target, False, type(exc).__name__, reconnect)
                    break
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = None
                    self._count(target, False, type(exc).__name__, reconnect)
                    break
                self._count(target, response.status == 200, f"HTTP {response.status}", reconnect)
                if response.will_close:
                    conn.close()
                    conn = None
                break
        if conn is not None:
            conn.close()
