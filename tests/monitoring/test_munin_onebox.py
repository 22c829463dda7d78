"""On the converged one-box: munin-node serves every plugin, munin-cron builds the dashboard, nginx serves it.

On the one-box `ops up` brought up (the `onebox` fixture), converges the monitoring roles and nginx
again (`ops converge --role ...`), twice: the second run must change nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from ops.stack import Stack
from roles.munin_node.plugins import host_plugins
from tests.chromium import screenshot
from tests.monitoring.conftest import OUTPUT, REPO, MuninNode

pytestmark = pytest.mark.onebox
ROLES = ["--role", "munin_node", "--role", "munin_master", "--role", "nginx"]
VALUE = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*\.value (U|-?\d+(\.\d+)?(e[-+]?\d+)?)$")
WWW = "/var/cache/munin/www"


def converge() -> str:
    done = subprocess.run([sys.executable, "-m", "ops", "converge", *ROLES], capture_output=True, text=True,
                          cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def stack(onebox: Stack) -> Stack:
    converge()
    again = converge()
    assert re.search(r"changed=0 failed=0", again), f"second converge changed something:\n{again}"
    return onebox


def test_munin_node_answers_fetch_for_every_plugin(stack):
    host = stack.hosts[0]
    expected = [p.name for p in host_plugins(stack.context(host))]
    node = MuninNode(stack.config.onebox.address, stack.config.onebox.munin_node_port)
    assert node.banner == "# munin node at onebox"
    listed = node.list()
    assert set(expected) <= set(listed)
    answers = {}
    for name in listed:
        lines, elapsed = node.fetch(name)
        assert lines and all(VALUE.match(line) for line in lines), f"{name}: {lines}"
        answers[name] = ({line.split(".")[0]: line.split(" ")[1] for line in lines}, elapsed)
    node.close()
    # Services that always run on the converged one-box answer with plausible numbers.
    assert int(answers["nginx"][0]["requests"]) > 0
    assert float(answers["load"][0]["load"]) >= 0
    slow = {name: round(t, 3) for name, (_, t) in answers.items() if t > 1.0}
    assert not slow, f"plugins slower than 1 s through munin-node: {slow}"


def test_munin_cron_builds_the_dashboard_and_nginx_serves_it(stack, tmp_path):
    started = time.time()
    subprocess.run(["su", "munin", "-s", "/bin/sh", "-c", "/usr/bin/munin-cron"], check=True, timeout=300)
    png = f"{WWW}/onebox/onebox/photos_per_second-day.png"
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getmtime(f"{WWW}/onebox/onebox/index.html") >= started - 1

    base = f"http://{stack.config.onebox.address}:{stack.config.onebox.http_port}/munin/"
    page = urllib.request.urlopen(base + "onebox/onebox/index.html", timeout=5).read().decode()
    assert "photos_per_second" in page
    image = urllib.request.urlopen(base + "onebox/onebox/photos_per_second-day.png", timeout=5)
    assert image.headers["Content-Type"] == "image/png"

    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "munin-dashboard.png"
    shot.unlink(missing_ok=True)
    screenshot(base + "onebox/onebox/index.html", shot, tmp_path / "chromium")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
