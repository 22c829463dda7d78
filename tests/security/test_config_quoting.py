"""Secrets written into config files stay one value: the real redis-server and the real curl read
back exactly the password we rendered, quotes, backslashes, spaces and `#` included."""

from __future__ import annotations

import base64
import http.server
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from roles.context import double_quoted
from tests.app_services import free_ports

NASTY = 'p"w \\d #x\'$(id)'


@pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server not installed")
def test_redis_reads_the_quoted_password_back_exactly(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    conf = tmp_path / "redis.conf"
    conf.write_text(f"bind 127.0.0.1\nport {port}\ndir {tmp_path}\nsave \"\"\nrequirepass {double_quoted(NASTY)}\n")
    server = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, password=NASTY, socket_timeout=2)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        # No retries: redis-py retries a refused login (an AuthenticationError is a ConnectionError)
        # with backoff, seconds to get the same refusal.
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, password=NASTY[:3], socket_timeout=2, retry=Retry(NoBackoff(), 0)).ping()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_curl_sends_the_quoted_credentials_exactly(tmp_path: Path) -> None:
    seen: list[str] = []

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            seen.append(self.headers["Authorization"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.handle_request, daemon=True).start()
    config = tmp_path / "api.curl"
    config.write_text(f"user = {double_quoted('photostack:' + NASTY)}\n")

    subprocess.run(["curl", "-sf", "-K", str(config), f"http://127.0.0.1:{server.server_port}/"], check=True, timeout=10)
    server.server_close()

    assert seen == ["Basic " + base64.b64encode(f"photostack:{NASTY}".encode()).decode()]
