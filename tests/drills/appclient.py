"""A logged-in API client of the one-box through nginx (urllib, own cookie jar)."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import uuid
from http.cookiejar import CookieJar

from PIL import Image

from tests.e2e.conftest import FromOwnAddress, multipart


def jpeg(color: str = "blue") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(out, "JPEG")
    return out.getvalue()


class ApiClient:
    """One user's session against http://127.0.0.1:<port>."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(FromOwnAddress(), urllib.request.HTTPCookieProcessor(CookieJar()))
        self.username = ""
        self.password = "drill-password-1"
        self.user_id = 0

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
             timeout: float = 15) -> tuple[int, dict]:
        req = urllib.request.Request(self.base + path, data=body, method=method,
                                     headers={"Host": "photostack.localhost", **({"Content-Type": content_type} if content_type else {})})
        try:
            with self.opener.open(req, timeout=timeout) as response:
                status, data = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, data = exc.code, exc.read()
        try:
            return status, json.loads(data)
        except ValueError:
            return status, {"raw": data[:200].decode(errors="replace")}

    def json(self, method: str, path: str, payload: dict) -> tuple[int, dict]:
        return self.call(method, path, json.dumps(payload).encode(), "application/json")

    def sign_up(self, prefix: str) -> ApiClient:
        self.username = f"{prefix}_{uuid.uuid4().hex[:10]}"
        status, body = self.json("POST", "/api/signup", {"username": self.username, "password": self.password})
        assert status == 201, body
        self.user_id = int(body["id"])
        return self

    def log_in(self) -> int:
        """Log in again (e.g. after sessions were lost); the HTTP status."""
        return self.json("POST", "/api/login", {"username": self.username, "password": self.password})[0]

    def post_photo(self, caption: str = "drill") -> tuple[int, dict]:
        body, content_type = multipart({"caption": caption}, ("image", "p.jpg", jpeg()))
        return self.call("POST", "/api/photos", body, content_type)

    def cookie_header(self) -> str:
        """This session's cookies as a Cookie header value (for load generators)."""
        jar = next(h.cookiejar for h in self.opener.handlers if isinstance(h, urllib.request.HTTPCookieProcessor))
        return "; ".join(f"{c.name}={c.value}" for c in jar)

    def feed_ids(self) -> list[int]:
        status, body = self.call("GET", "/api/feed?limit=100")
        assert status == 200, body
        return [int(p["id"]) for p in body["photos"]]
