"""Drill: `ops secret rotate` of the Django key and the Redis password on the real one-box while a
logged-in user's requests keep flowing through nginx: not one fails, the session made before
the rotation still works after it, and only the new values are accepted afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis

from infra.secrets import SecretStore
from ops import audit
from ops.remote import check_converged
from tests.drills.httpload import HttpLoad
from tests.e2e.conftest import Client

pytestmark = [pytest.mark.onebox, pytest.mark.drill]

ROTATED = ("djangoSecretKey", "redisPassword")


def test_rotating_django_key_and_redis_password_fails_no_request(converged):
    stack = converged
    box = stack.config.onebox
    # A box converged before Redis's ACL file existed restarts Redis once for it: not the rotation's doing.
    check_converged(stack.converge(stack.hosts, {"redis"}), "converge redis")
    user = Client(f"http://127.0.0.1:{box.http_port}")
    status, body = user.json("POST", "/api/signup", {"username": f"rot_{os.getpid()}", "password": "rotate-pass-1"})
    assert status == 201, body
    before = {name: SecretStore.for_stack(stack.name)[name] for name in ROTATED}

    # Every request needs the session (signed with the Django key, stored in Redis): /api/me
    # answers 401 without it, so a rejected signature or a refused Redis login is a failure.
    load = HttpLoad(box.http_port, ["/api/me", "/api/feed", "/health"], clients=2, max_seconds=300,
                    headers={"Cookie": f"photostack_session={user.session_cookie()}"}).start()
    outputs, seconds = [], {}
    try:
        load.wait_for_more(50)
        for name in ROTATED:
            began = time.monotonic()
            done = subprocess.run([sys.executable, "-m", "ops", "secret", "rotate", name],
                                  capture_output=True, text=True, timeout=300)
            seconds[name] = time.monotonic() - began
            assert done.returncode == 0, done.stdout + done.stderr
            outputs.append(done.stdout + done.stderr)
        load.wait_for_more(50)
    finally:
        result = load.stop()
        stack.reload_secrets()  # the rotations ran in other processes; the drill's teardown converges
    took = ", ".join(f"{name} {s:.1f}s" for name, s in seconds.items())
    print(f"\nrotations ({took}) under load: {result.describe()}")
    assert result.failed == 0, result.describe()

    after = SecretStore.for_stack(stack.name)
    for name in ROTATED:
        assert after[name] != before[name]
        assert after.rotating(name) is None  # the old value is retired
        assert not [o for o in outputs if before[name] in o or after[name] in o]  # never printed
    trail = [e.command + " " + e.outcome for e in audit.trail(stack).read(10)]
    assert [t for t in trail if t.startswith("secret rotate")][-2:] == [f"secret rotate {n} ok" for n in ROTATED]

    def accepts(password: str) -> bool:
        try:
            return redis.Redis(host=box.address, port=box.redis_base_port, password=password, socket_timeout=5).ping()
        except redis.AuthenticationError:
            return False

    assert accepts(after["redisPassword"]) and not accepts(before["redisPassword"])
    assert user.json("GET", "/api/me")[0] == 200  # the session outlived the old key
