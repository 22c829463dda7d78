"""The one-box's nginx site config (rendered by the nginx role) in front of two throwaway
gunicorn instances of the app: a frozen (SIGSTOP) instance is taken out of rotation and every
like and feed read still succeeds, each like stored once; with every instance frozen, requests
past the in-flight limit are refused at once with 503 + Retry-After."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.app_helpers import jpeg, unique_name, wait_for
from tests.app_services import REPO, _kill_group, free_ports, start_nginx, wait_port

FREEZE_S = 7  # longer than nginx_fail_timeout (5 s): the frozen instance is probed again once


def site_config(listen: int, app_ports: list[int]) -> tuple[str, int]:
    """The one-box's photostack.conf with its ports replaced by ours, and its in-flight limit."""
    from ops.stack import Stack
    from roles.engine.resources import File

    stack = Stack.load("onebox")
    resources = stack.desired(stack.hosts[0], {"nginx"}).resources
    site = next(r.content for r in resources if isinstance(r, File) and r.path == "/etc/nginx/conf.d/photostack.conf")
    servers = re.findall(r"server (127\.0\.0\.1:\d+) ", site)
    assert len(servers) == len(app_ports) == 2, servers
    for server, port in zip(servers, app_ports):
        site = site.replace(f"server {server} ", f"server 127.0.0.1:{port} ")
    site = re.sub(r"listen [0-9.]+:\d+", f"listen 127.0.0.1:{listen}", site)
    limit = int(re.search(r"limit_conn photostack_app_inflight (\d+);", site).group(1))
    return site, limit


@pytest.fixture
def web_tier(app_stack, state_root, tmp_path):
    """(nginx port, in-flight limit, the two gunicorn processes) over the app_stack services."""
    from infra.role_settings import declared

    nginx_port, *app_ports = free_ports(3)
    site, limit = site_config(nginx_port, app_ports)
    d = declared("app")
    apps = []
    for port in app_ports:
        log = open(tmp_path / f"app-{port}.log", "ab")
        apps.append(subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "app.wsgi:application", "-k", "gthread", "-w", "1", "--threads", "4",
             "-b", f"127.0.0.1:{port}", "--backlog", str(d["app_backlog"]), "--timeout", str(d["app_timeout"]),
             "--keep-alive", str(d["app_keepalive"]), "--no-control-socket"],
            # Every test user signs up from 127.0.0.1: lift the per-address sign-up limit (not tested here).
            cwd=REPO, env={**os.environ, "PHOTOSTACK_SIGNUP_RATE_IP": "10000/600"}, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True))
        log.close()
    nginx = start_nginx(tmp_path, site, workers=2, connections=1024)
    try:
        wait_port(nginx_port, nginx, 10, "nginx")
        for proc, port in zip(apps, app_ports):
            wait_port(port, proc, 30, "gunicorn")
            # The master listens before its worker has loaded the app: a request sent then queues
            # for the load (seconds on a busy box) and is refused as over its queue budget.
            wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/health/node", timeout=30).status_code == 200, timeout=60)
        yield nginx_port, limit, apps
    finally:
        for proc in [nginx, *apps]:
            os.killpg(proc.pid, signal.SIGCONT)
            _kill_group(proc)


def session(base: str) -> requests.Session:
    """A new user's logged-in session through nginx."""
    client = requests.Session()
    client.headers["Host"] = "photostack.localhost"
    answer = client.post(f"{base}/api/signup", json={"username": unique_name("lb"), "password": "correct horse"}, timeout=10)
    assert answer.status_code == 201, answer.text
    return client


def test_a_frozen_app_server_is_routed_around(web_tier):
    port, _, apps = web_tier
    base = f"http://127.0.0.1:{port}"
    poster = session(base)
    posted = poster.post(f"{base}/api/photos", files={"image": ("p.jpg", jpeg(), "image/jpeg")}, timeout=10)
    assert posted.status_code == 201, posted.text
    pid = posted.json()["id"]
    wait_for(lambda: poster.get(f"{base}/api/feed", timeout=10).json()["photos"])
    with ThreadPoolExecutor(8) as pool:  # a sign-up hashes a password: both servers' cores share the work
        likers = list(pool.map(lambda _: session(base), range(40)))

    def like_and_read(client: requests.Session) -> tuple[int, int, int]:
        liked = client.post(f"{base}/api/photos/{pid}/like", timeout=10).status_code
        return liked, poster.get(f"{base}/api/feed", timeout=10).status_code, \
            client.get(f"{base}/api/photos/{pid}", timeout=10).status_code

    os.killpg(apps[0].pid, signal.SIGSTOP)  # alive, its kernel accepting, answering nothing
    frozen_at = time.monotonic()
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = []
            while time.monotonic() - frozen_at < FREEZE_S:
                answers += pool.map(like_and_read, likers, timeout=60)
    finally:
        os.killpg(apps[0].pid, signal.SIGCONT)
    assert Counter(answers) == Counter({(200, 200, 200): len(answers)})
    # Each liker liked several times while one server was frozen (and retried on the other):
    # each like is stored once, and the woken server did nothing twice.
    time.sleep(1)
    assert poster.get(f"{base}/api/photos/{pid}", timeout=10).json()["like_count"] == len(likers)


def test_past_the_inflight_limit_requests_are_refused_at_once(web_tier):
    port, limit, apps = web_tier
    base = f"http://127.0.0.1:{port}"
    for app in apps:  # every request admitted now waits out its read timeout: the limit fills
        os.killpg(app.pid, signal.SIGSTOP)

    def read(_: int) -> tuple[int, str | None]:
        answer = requests.get(f"{base}/api/feed", headers={"Host": "photostack.localhost"}, timeout=30)
        return answer.status_code, answer.headers.get("Retry-After")

    try:
        with ThreadPoolExecutor(limit + 16) as pool:
            answers = Counter(pool.map(read, range(limit + 16)))
    finally:
        for app in apps:
            os.killpg(app.pid, signal.SIGCONT)
    refused = answers[(503, "1")]
    assert refused >= 16, answers
    # The admitted ones found no server answering: nginx's own gateway errors, no Retry-After.
    assert set(answers) <= {(503, "1"), (504, None), (502, None)}, answers
