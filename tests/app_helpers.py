"""Small helpers shared by the app tests (need the `app_stack` fixture running)."""

from __future__ import annotations

import io
import itertools
import time

from PIL import Image

_names = itertools.count()
_addresses = itertools.count(1)


def jpeg(width: int = 64, height: int = 48, color: str = "red") -> bytes:
    """A small real JPEG."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "JPEG")
    return out.getvalue()


def unique_name(prefix: str) -> str:
    """A username no other test uses."""
    return f"{prefix}_{time.monotonic_ns() % 10**9}_{next(_names)}"


def client_address() -> str:
    """A client address no other test client uses (198.18.0.0/15, the benchmarking range): each
    simulated user comes from its own address, as real ones do, so the per-address sign-up and
    log-in limits (app/auth.py) see one user each."""
    n = next(_addresses)
    return f"198.{18 + n // 65536 % 2}.{n // 256 % 256}.{n % 256}"


def signed_up(prefix: str):
    """(Django test Client logged in as a new user from its own address, the JSON of that user)."""
    from django.test import Client

    client = Client(REMOTE_ADDR=client_address())
    response = client.post("/api/signup", {"username": unique_name(prefix), "password": "correct horse"},
                           content_type="application/json")
    assert response.status_code == 201, response.content
    return client, response.json()


def post_photo(client, data: bytes | None = None, caption: str = "hello"):
    """Upload a photo through the API; returns the response."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    image = SimpleUploadedFile("photo.jpg", jpeg() if data is None else data, content_type="image/jpeg")
    return client.post("/api/photos", {"image": image, "caption": caption})


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):
    """Poll until predicate() is truthy (returns its value) or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
