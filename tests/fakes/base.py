"""A threaded loopback HTTP(S) server with start/stop that can restart on the same port."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    """Request handler with JSON helpers; `self.server.fake` is the owning `LocalServer`."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Keep test output quiet."""

    @property
    def fake(self) -> Any:
        return self.server.fake  # type: ignore[attr-defined]

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class LocalServer:
    """Serve `handler` on 127.0.0.1 from a thread; `with` starts and stops it.

    `stop()` then `start()` reopens the same port, which is how tests make a service
    "unreachable" and then "come back".
    """

    handler: type[JsonHandler] = JsonHandler

    def __init__(self, ssl_context: ssl.SSLContext | None = None, port: int = 0):
        self.ssl_context = ssl_context
        self.port = port
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> LocalServer:
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
        httpd.daemon_threads = True
        if self.ssl_context:
            httpd.socket = self.ssl_context.wrap_socket(httpd.socket, server_side=True)
        httpd.fake = self  # type: ignore[attr-defined]
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
