"""The live wallboard: one-second series from the app's own counters, markers, and the TV page in
headless Chromium against the real app (a threaded WSGI server on the `app_stack` services)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from monitoring.alerts.alert_pipeline import AlertPipeline
from monitoring.alerts.alert_store import AlertStore
from infra.alerts import Alert
from monitoring.alerts.silences import SilenceStore
from monitoring.wallboard_markers import file_writer
from ops import audit
from tests.app_helpers import post_photo, signed_up, wait_for
from tests.chromium import Browser

REPO = Path(__file__).resolve().parents[1]
PHOTOS = 7
WIDTH, HEIGHT = 1920, 1080


# --- pure parts -----------------------------------------------------------------------------------

def test_latency_buckets_bound_a_duration_within_five_percent():
    from app.wallboard import bucket, bucket_ms

    for ms in (0.3, 1.0, 7.5, 42.0, 999.0, 12_345.0):
        upper = bucket_ms(bucket(ms))
        assert ms <= upper * 1.000001 and upper <= ms * 1.05 * 1.000001, (ms, upper)


def test_p99_is_the_bucket_of_the_99th_percent_request():
    from app.wallboard import bucket, bucket_ms, percentile

    histogram = {bucket(5.0): 98, bucket(80.0): 1, bucket(900.0): 1}  # 100 requests
    assert percentile(histogram, 0.99) == round(bucket_ms(bucket(80.0)), 1)
    assert percentile({bucket(5.0): 99, bucket(900.0): 1}, 0.99) == round(bucket_ms(bucket(5.0)), 1)
    assert percentile({}, 0.99) is None


# --- the data endpoint ----------------------------------------------------------------------------

def board(client, window: int = 120) -> dict:
    response = client.get(f"/wallboard/data.json?window={window}")
    assert response.status_code == 200, response.content
    return response.json()


def test_posted_photos_raise_the_total_and_the_seconds_by_exactly_n(app_stack):
    from django.test import Client

    poster, _ = signed_up("board")
    viewer = Client()
    before = board(viewer)
    started = int(time.time())
    for i in range(PHOTOS):
        assert post_photo(poster, caption=f"board {i}").status_code == 201
    after = board(viewer)
    assert after["totals"]["photos_posted"] - before["totals"]["photos_posted"] == PHOTOS
    seconds = range(after["start"], after["now"] + 1)
    points = dict(zip(seconds, after["series"]["photos_posted"]))
    assert sum(v for s, v in points.items() if s >= started) == PHOTOS
    # The requests were measured too: each second that saw a post has a request count and a p99.
    busy = [i for i, s in enumerate(seconds) if s >= started and points[s]]
    assert all(after["series"]["requests"][i] >= points[seconds[i]] for i in busy)
    assert all(after["series"]["p99_ms"][i] > 0 for i in busy)


def test_a_bad_window_is_one_clear_400(app_stack):
    from django.test import Client

    for window in ("x", "5", "100000"):
        response = Client().get(f"/wallboard/data.json?window={window}")
        assert response.status_code == 400 and "window" in response.json()["error"]


def test_the_marker_command_ops_runs_records_a_marker_and_refuses_an_unknown_kind(app_stack):
    from django.test import Client

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "app.wallboard", "mark"]
    done = subprocess.run([*command, "failover", "shard 1: shard1r1 promoted"], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    markers = board(Client())["markers"]
    assert markers[-1]["kind"] == "failover" and markers[-1]["text"] == "shard 1: shard1r1 promoted"
    bad = subprocess.run([*command, "reboot", "x"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert bad.returncode == 2 and "invalid choice: 'reboot'" in bad.stderr


# --- the page in Chromium, under load -------------------------------------------------------------

class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:  # one line per request would drown the test output
        pass


def with_page_markers(app: Callable, path: Path) -> Callable:
    """The WSGI app, and the page-marker file at PAGE_URL and the published audit trail (`path`'s
    sibling audit.json) at AUDIT_URL as nginx serves them beside the Munin pages (404 until written)."""
    from monitoring.wallboard_markers import AUDIT_URL, PAGE_URL

    files = {PAGE_URL: path, AUDIT_URL: path.with_name("audit.json")}

    def serve(environ: dict, start_response: Callable) -> list[bytes]:
        if environ["PATH_INFO"] not in files:
            return app(environ, start_response)
        path = files[environ["PATH_INFO"]]
        if not path.exists():
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        start_response("200 OK", [("Content-Type", "application/json"), ("Cache-Control", "no-store")])
        return [path.read_bytes()]

    return serve


@pytest.fixture()
def page_markers(tmp_path) -> Path:
    """Where this test's alert pipeline writes page markers (the monitoring host's PAGE_FILE)."""
    return tmp_path / "page-markers.json"


@pytest.fixture()
def served_app(app_stack, page_markers) -> Iterator[str]:
    """The app served over HTTP on a free port (Chromium needs a real server)."""
    from django.core.wsgi import get_wsgi_application

    server = make_server("127.0.0.1", 0, with_page_markers(get_wsgi_application(), page_markers),
                         server_class=ThreadingWSGIServer, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def load(base: str, stop: threading.Event) -> None:
    """Background traffic: the home page and the API, as fast as one client goes."""
    while not stop.is_set():
        for path in ("/login/", "/api/openapi.yaml"):
            try:
                urllib.request.urlopen(base + path, timeout=5).read()
            except OSError:
                pass  # 401s and friends are traffic too


def points_since(browser: Browser, series: str, since: int) -> int:
    """Sum of a chart's per-second points from Unix second `since` on, read from the page's SVG."""
    return browser.evaluate(f"""(() => {{
        const svg = document.querySelector('svg[data-series="{series}"]');
        const start = Number(svg.dataset.start);
        return svg.dataset.points.split(',').reduce((a, v, i) => a + (start + i >= {since} ? Number(v || 0) : 0), 0);
    }})()""")


def shown_total(browser: Browser) -> int:
    return int(browser.evaluate("document.getElementById('total-photos_posted').textContent").replace(",", ""))


def test_the_wallboard_counts_every_photo_marks_deploys_and_pages_and_reads_across_a_room(served_app, page_markers,
                                                                                           tmp_path):
    stop = threading.Event()
    traffic = threading.Thread(target=load, args=(served_app, stop), daemon=True)
    traffic.start()
    try:
        with Browser(tmp_path / "chromium") as browser:
            browser.open("about:blank")
            browser.send("Emulation.setDeviceMetricsOverride",
                         {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
            browser.send("Page.navigate", {"url": served_app + "/wallboard/"})
            # The first poll comes once Chromium has loaded the page: slow on a loaded machine.
            assert browser.wait_for("window.wallboardData && document.getElementById('total-photos_posted')"
                                    ".textContent !== '–'", timeout=60), "the page never showed data"
            # Start on a new second: photos of earlier tests stay in earlier seconds' points; then
            # let the page poll once more so its total is current.
            time.sleep(1 - time.time() % 1)
            started = int(time.time())
            time.sleep(1.5)
            before = shown_total(browser)
            poster, _ = signed_up("tv")
            for i in range(PHOTOS):
                assert post_photo(poster, caption=f"tv {i}").status_code == 201
            assert browser.wait_for(f"Number(document.getElementById('total-photos_posted').textContent"
                                    f".replace(/,/g, '')) >= {before + PHOTOS}")
            assert shown_total(browser) == before + PHOTOS
            wait_for(lambda: points_since(browser, "photos_posted", started) == PHOTOS, timeout=20)  # the page polls once a second
            assert points_since(browser, "photos_posted", started) == PHOTOS
            measured = browser.evaluate(f"(d => d.series.requests.reduce((a, v, i) => a + (d.start + i >= {started} ? v : 0), 0))"
                                        "(window.wallboardData)")
            assert measured > PHOTOS  # the load and the posts were measured

            # What `ops deploy` runs on an app host once the release is out.
            done = subprocess.run([sys.executable, "-m", "app.wallboard", "mark", "deploy", "release 0123abc"],
                                  capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                  timeout=60)
            assert done.returncode == 0, done.stderr
            assert browser.wait_for("document.querySelectorAll('svg line.marker.deploy').length === 6 && "
                                    "document.querySelector('#markers .deploy').textContent.includes('release 0123abc')")

            # A page opens an incident through the alert pipeline on the monitoring host.
            pipeline = AlertPipeline(AlertStore(tmp_path), SilenceStore(tmp_path), None, "https://runbooks.example",
                                     "onebox", markers=file_writer(page_markers))
            pipeline.trigger(Alert("onebox", "nginx-0", "nginx", "errors_5xx", "critical", "12.00", {"critical": ":5"}))
            assert browser.wait_for("document.querySelectorAll('svg line.marker.page').length === 6 && "
                                    "document.querySelector('#markers .page').textContent.includes('5xx_rate_high')")

            # A changing `ops` command goes in the trail; the monitoring host copies it beside the markers.
            trail = audit.FileTrail(tmp_path / "trail")
            trail.write(audit.Entry(time.time(), "alice", "laptop", "failover --shard 1", "ok"))
            audit.publish(trail, page_markers.with_name("audit.json"))
            assert browser.wait_for("[...document.querySelectorAll('#audit li')].some(e => "
                                    "e.textContent.endsWith('alice: ops failover --shard 1 → ok'))")

            heights = browser.evaluate("[...document.querySelectorAll('.value')].map(e => e.getBoundingClientRect().height)")
            assert len(heights) == 6 and min(heights) >= 0.08 * HEIGHT, heights
            # test-output/, not docs/: docs/wallboard.png (the README's) is a copy of one such run.
            (REPO / "test-output").mkdir(exist_ok=True)
            shot = REPO / "test-output" / "wallboard.png"
            browser.screenshot(shot)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        stop.set()
        traffic.join(timeout=10)
