"""Fixtures for end-to-end tests over HTTP through nginx on the converged one-box."""

from __future__ import annotations

import functools
import http.client
import io
import ipaddress
import itertools
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"


_sources = itertools.count()


class FromOwnAddress(urllib.request.HTTPHandler):
    """HTTP from a loopback address of its own (127.1.0.1, 127.1.0.2, …; all of 127/8 is this
    machine): each simulated user is its own client address to nginx, as real users are, so the
    app's per-address sign-up and log-in limits see one user each."""

    def __init__(self) -> None:
        super().__init__()
        n = next(_sources)
        self.source = (f"127.{1 + n // 62500 % 250}.{n // 250 % 250}.{1 + n % 250}", 0)

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(http.client.HTTPConnection, source_address=self.source), req)


class HttpsFrom(urllib.request.HTTPSHandler):
    """HTTPS from a given local address: a lab user's own client address (tests/lab_stack/conftest.py)."""

    def __init__(self, context: ssl.SSLContext, source: str) -> None:
        super().__init__(context=context)
        self.context, self.source = context, (source, 0)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(http.client.HTTPSConnection, source_address=self.source),
                            req, context=self.context)


class Client:
    """A user agent with its own cookie jar (one logged-in session) and, on loopback (the
    one-box), its own address. `host`: the Host header to send when the base names an address
    (a load balancer serving the stack's domain, as in the lab); `context`: the TLS context of an
    https base (e.g. one trusting the lab CA)."""

    def __init__(self, base: str, host: str | None = None, context: ssl.SSLContext | None = None,
                 source: str | None = None) -> None:
        self.base = base
        self.host = host
        self.cookies = CookieJar()
        handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPCookieProcessor(self.cookies)]
        if ipaddress.ip_address(urllib.parse.urlsplit(base).hostname or "0.0.0.0").is_loopback:
            handlers.append(FromOwnAddress())
        if context is not None:
            handlers.append(HttpsFrom(context, source) if source else urllib.request.HTTPSHandler(context=context))
        self.opener = urllib.request.build_opener(*handlers)

    def _request(self, method: str, path: str, body: bytes | None = None) -> urllib.request.Request:
        req = urllib.request.Request(self.base + path, data=body, method=method)
        if self.host:
            req.add_header("Host", self.host)
        return req

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str | None = None) -> tuple[int, bytes]:
        req = self._request(method, path, body)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with self.opener.open(req, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, method: str, path: str, payload: dict | None = None) -> tuple[int, dict]:
        body = json.dumps(payload).encode() if payload is not None else None
        status, data = self.request(method, path, body, "application/json" if body else None)
        return status, json.loads(data) if data.startswith((b"{", b"[")) else {"raw": data.decode(errors="replace")}

    def json_honouring_retry_after(self, method: str, path: str, attempts: int = 5) -> tuple[int, dict]:
        """`json`, retried as a well-behaved client retries: after a 503 that carries Retry-After
        (the app's and nginx's overload refusal: the work was not done), wait that long and try
        again, at most `attempts` times. Any other answer, or a 503 without Retry-After, is returned."""
        for _ in range(attempts - 1):
            req = self._request(method, path)
            try:
                with self.opener.open(req, timeout=30) as response:
                    data = response.read()
                    return response.status, json.loads(data) if data.startswith(b"{") else {}
            except urllib.error.HTTPError as exc:
                data = exc.read()
                retry_after = exc.headers.get("Retry-After")
                if exc.code != 503 or retry_after is None:
                    return exc.code, json.loads(data) if data.startswith(b"{") else {}
                time.sleep(float(retry_after))
        return self.json(method, path)

    def post_photo(self, image: bytes, caption: str = "", filename: str = "p.jpg") -> tuple[int, dict]:
        body, content_type = multipart({"caption": caption}, ("image", filename, image))
        status, data = self.request("POST", "/api/photos", body, content_type)
        return status, json.loads(data) if data.startswith(b"{") else {"raw": data.decode(errors="replace")}

    def session_cookie(self) -> str:
        return next(c.value for c in self.cookies if c.name == "photostack_session")

    def sign_up(self, prefix: str, password: str = "e2e password") -> tuple[str, dict]:
        """Sign up a fresh user `<prefix>_<random>` (this client's session is then theirs);
        returns (username, the user as the API shows it)."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        status, body = self.json("POST", "/api/signup", {"username": name, "password": password})
        assert status == 201, body
        return name, body

    def feed_photo(self, photo_id: str) -> dict | None:
        """The photo `photo_id` as this user's home feed shows it, or None while it is not there."""
        status, body = self.json("GET", "/api/feed")
        assert status == 200, body
        return next((p for p in body["photos"] if p["id"] == photo_id), None)


def multipart(fields: dict[str, str], file: tuple[str, str, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body with text fields and one file."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    name, filename, data = file
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def jpeg(width: int = 800, height: int = 600) -> bytes:
    """A noisy JPEG (noise keeps it from compressing to nothing)."""
    from PIL import Image

    out = io.BytesIO()
    Image.effect_noise((width, height), 60).convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


def wait_until(check, timeout: float = 30.0, interval: float = 0.2):
    """Poll `check()` until it returns something truthy; returns it (or the last falsy value)."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    return value


@pytest.fixture(scope="session")
def base_url(onebox) -> str:
    """The one-box through nginx."""
    box = onebox.config.onebox
    return f"http://{box.address}:{box.http_port}"


@pytest.fixture
def new_user(base_url):
    """Sign up a fresh user; returns (client, username, user json)."""

    def make(prefix: str = "e2e") -> tuple[Client, str, dict]:
        client = Client(base_url)
        name, body = client.sign_up(prefix)
        return client, name, body

    return make
