"""Fixtures for the monitoring tests: plugin runner, a throwaway Redis, a munin-node client."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "monitoring" / "agents" / "munin" / "plugins"
OUTPUT = REPO / "test-output"


def run_plugin(name: str, *args: str, env: dict[str, str] | None = None, link_as: str | None = None,
               tmp: Path | None = None) -> tuple[str, float]:
    """Run a plugin script as munin-node would (optionally through a link named `link_as`)."""
    path = PLUGINS / name
    if link_as:
        assert tmp is not None
        path = tmp / link_as
        if not path.exists():
            path.symlink_to(PLUGINS / name)
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": str(PLUGINS.parent), **(env or {})}
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, env=environment,
                          timeout=10)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, f"{name} {args} exited {done.returncode}: {done.stderr}"
    return done.stdout, elapsed


def parse_values(output: str) -> dict[str, str]:
    """`field.value X` lines as {field: X}."""
    values = {}
    for line in output.splitlines():
        name, _, value = line.partition(" ")
        assert name.endswith(".value"), f"not a value line: {line!r}"
        values[name.removesuffix(".value")] = value
    return values


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A throwaway redis-server on a free loopback port, no persistence."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port = free_port()
    directory = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(directory)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    process.terminate()
    process.wait(timeout=10)


class MuninNode:
    """A client of munin-node's text protocol (`list`, `fetch NAME`)."""

    def __init__(self, address: str = "127.0.0.1", port: int = 4949):
        self.sock = socket.create_connection((address, port), timeout=20)
        self.file = self.sock.makefile("rwb")
        self.banner = self.file.readline().decode().strip()

    def _send(self, command: str) -> None:
        self.file.write(f"{command}\n".encode())
        self.file.flush()

    def list(self) -> list[str]:
        self._send("list")
        return self.file.readline().decode().split()

    def fetch(self, name: str) -> tuple[list[str], float]:
        """The answer lines to `fetch NAME` (up to the closing `.`) and how long it took."""
        started = time.monotonic()
        self._send(f"fetch {name}")
        lines = []
        while (line := self.file.readline().decode().rstrip("\n")) != ".":
            lines.append(line)
        return lines, time.monotonic() - started

    def close(self) -> None:
        self._send("quit")
        self.sock.close()
