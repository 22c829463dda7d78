"""Headless Chromium (Debian's `chromium`) for the UI and dashboard tests.

`screenshot(url, path)` is a one-shot `--screenshot`. `Browser` drives Chromium over the
DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages ending in NUL on fds 3/4),
so a test can set a session cookie, open a page, evaluate JavaScript and capture it without a
WebDriver or websocket library.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,900"]


def chromium_path() -> str:
    """The chromium binary, or skip the test with the package to install."""
    path = shutil.which("chromium")
    if not path:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return path


def screenshot(url: str, shot: Path, profile: Path) -> None:
    """Load `url` and save a PNG screenshot (no cookies, no script)."""
    subprocess.run([chromium_path(), *FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120, check=True)


class Browser:
    """One headless Chromium driven over the DevTools pipe; use as a context manager."""

    def __init__(self, profile: Path, timeout: float = 30.0) -> None:
        self.timeout = timeout
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4.
        self.process = subprocess.Popen(
            [chromium_path(), *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=lambda: (os.dup2(to_chrome_r, 3), os.dup2(from_chrome_w, 4)),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._buffer = b""
        self.session: str | None = None

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        os.close(self._to_chrome)
        os.close(self._from_chrome)

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        """Send one command (to the attached page unless `session` is False) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise TimeoutError(f"{method}: no reply in {self.timeout} s")

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def open(self, url: str, cookies: list[dict] | None = None) -> None:
        """Set cookies (browser-wide), open `url` in a new page and attach to it."""
        if cookies:
            self.send("Storage.setCookies", {"cookies": cookies}, session=False)
        target = self.send("Target.createTarget", {"url": url}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0):
        """Poll a JavaScript expression until it is truthy; returns its value (or the last falsy one)."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except RuntimeError as exc:
                # The page is still navigating: its JavaScript context is not there yet or was
                # just replaced. Anything else is a real error.
                if "context" not in str(exc).lower():
                    raise
                value = None
            if value:
                return value
            time.sleep(0.2)
        return value

    def screenshot(self, path: Path) -> None:
        """Save the page as PNG."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
