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
from tests.chromium import Browser, screenshot
from tests.monitoring.conftest import OUTPUT, REPO, MuninNode

pytestmark = pytest.mark.onebox
# redis, pgbouncer, rabbitmq: they make the logins the plugins read with (a box last converged
# from an older tree has none of them: every such plugin would read U).
ROLES = ["--role", "redis", "--role", "pgbouncer", "--role", "rabbitmq", "--role", "munin_node",
         "--role", "munin_master", "--role", "nginx"]
VALUE = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*\.value (U|-?\d+(\.\d+)?(e[-+]?\d+)?)$")
WWW = "/var/cache/munin/www"


def run_munin_cron() -> None:
    """One munin-cron run as munin. The one-box's own munin-cron loop may be mid-run (munin-update
    then refuses with "Lock already exists"): wait for it, bounded."""
    deadline = time.monotonic() + 120
    while True:
        done = subprocess.run(["su", "munin", "-s", "/bin/sh", "-c", "/usr/bin/munin-cron"], capture_output=True,
                              text=True, timeout=300)
        if done.returncode == 0:
            return
        assert "Lock already exists" in done.stderr and time.monotonic() < deadline, done.stderr
        time.sleep(2)


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


def test_every_installed_plugin_reports_numbers_through_munin_run(stack):
    """munin-run runs a plugin exactly as munin-node does: its plugin-conf.d settings, user and group."""
    base = f"http://{stack.config.onebox.address}:{stack.config.onebox.http_port}"
    for _ in range(5):  # some traffic
        urllib.request.urlopen(base + "/health", timeout=5).read()
    installed = sorted(os.listdir("/etc/munin/plugins"))
    assert {p.name for p in host_plugins(stack.context(stack.hosts[0]))} <= set(installed)
    unknown = {}
    for name in installed:
        done = subprocess.run(["munin-run", name], capture_output=True, text=True, timeout=30)
        lines = done.stdout.splitlines()
        assert done.returncode == 0 and lines and all(VALUE.match(line) for line in lines), (name, done)
        unknown.update({f"{name}.{line.split('.')[0]}": done.stderr.strip() for line in lines if line.endswith(" U")})
    assert not unknown, f"plugins report unknown values: {unknown}"


def test_munin_cron_builds_the_dashboard_and_nginx_serves_it(stack, tmp_path):
    started = time.time()
    run_munin_cron()
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


BUSINESS = ("photos_per_second", "likes_per_second", "signups_per_minute", "nginx", "rabbitmq")


def test_the_photostack_overview_shows_the_business_graphs_in_chromium(stack, tmp_path):
    run_munin_cron()
    url = f"http://{stack.config.onebox.address}:{stack.config.onebox.http_port}/munin/photostack-day.html"
    with Browser(tmp_path / "chromium") as browser:
        browser.open("about:blank")
        browser.send("Emulation.setDeviceMetricsOverride", {"width": 1920, "height": 1080, "deviceScaleFactor": 1,
                                                            "mobile": False})
        browser.send("Page.navigate", {"url": url})
        loaded = browser.wait_for("(() => { const i = [...document.images].filter(i => i.src.endsWith('-day.png'));"
                                  " return i.length && i.every(i => i.complete && i.naturalWidth > 0) &&"
                                  " i.map(i => i.src.split('/').pop()); })()")
        assert loaded, "the overview's graphs did not load"
        assert sorted(loaded) == sorted(f"{name}-day.png" for name in BUSINESS)
        titles = browser.evaluate("[...document.querySelectorAll('h3')].map(h => h.textContent)")
        assert "Photos posted per second" in titles and "Task queue depth" in titles, titles
        OUTPUT.mkdir(exist_ok=True)
        browser.screenshot(OUTPUT / "munin-overview.png")
