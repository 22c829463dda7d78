"""The wallboard on the converged one-box, through nginx, in headless Chromium: `ops deploy` puts a
marker on it, and photos posted through nginx under load move its total and its seconds by exactly
as many."""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from ops import rollout
from tests.chromium import Browser
from tests.e2e.conftest import jpeg

pytestmark = pytest.mark.onebox
PHOTOS = 9
HEIGHT = 1080


def load(base: str, stop: threading.Event) -> None:
    """Background traffic through nginx while the board is watched."""
    while not stop.is_set():
        try:
            urllib.request.urlopen(base + "/login/", timeout=5).read()
        except OSError:
            pass


def test_the_wallboard_marks_a_deploy_and_counts_every_photo_under_load(onebox, base_url, new_user, tmp_path):
    log = rollout.deploy(onebox)  # the working tree: the release that serves the board
    assert not [w for w in log.warnings if "wallboard" in w], log.warnings
    stop = threading.Event()
    traffic = threading.Thread(target=load, args=(base_url, stop), daemon=True)
    traffic.start()
    try:
        with Browser(tmp_path / "chromium") as browser:
            browser.open("about:blank")
            browser.send("Emulation.setDeviceMetricsOverride",
                         {"width": 1920, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
            browser.send("Page.navigate", {"url": base_url + "/wallboard/"})
            assert browser.wait_for(f"document.querySelector('#markers .deploy')?.textContent.includes('{log.version}')"), \
                "no deploy marker on the board"
            total = "Number(document.getElementById('total-photos_posted').textContent.replace(/,/g, ''))"
            before = browser.evaluate(total)
            started = int(time.time())
            client, _, _ = new_user("board")
            for i in range(PHOTOS):
                status, body = client.post_photo(jpeg(64, 48), f"board {i}")
                assert status == 201, body
            assert browser.wait_for(f"{total} >= {before + PHOTOS}")
            assert browser.evaluate(total) == before + PHOTOS
            points = f"""(() => {{
                const svg = document.querySelector('svg[data-series="photos_posted"]'), start = Number(svg.dataset.start);
                return svg.dataset.points.split(',').reduce((a, v, i) => a + (start + i >= {started} ? Number(v || 0) : 0), 0);
            }})()"""
            assert browser.wait_for(f"{points} === {PHOTOS}", timeout=5), browser.evaluate(points)
            heights = browser.evaluate("[...document.querySelectorAll('.value')].map(e => e.getBoundingClientRect().height)")
            assert min(heights) >= 0.08 * HEIGHT, heights
    finally:
        stop.set()
        traffic.join(timeout=10)
