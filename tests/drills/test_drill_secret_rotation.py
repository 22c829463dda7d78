"""Drill: `ops secret rotate djangoSecretKey redisPassword` (one rotation, shared rolls) on the
real one-box while a logged-in user's requests keep flowing through nginx: not one fails, the
session made before the rotation still works after it, and only the new values are accepted
afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis

from infra.secrets import SecretStore
from ops import audit
from tests.drills.httpload import HttpLoad
from tests.e2e.conftest import Client

pytestmark = [pytest.mark.onebox, pytest.mark.drill]

ROTATED = ("djangoSecretKey", "redisPassword")


def test_rotating_django_key_and_redis_password_fails_no_request(converged):
    stack = converged
    box = stack.config.onebox
    user = Client(f"http://127.0.0.1:{box.http_port}")
    status, body = user.json("POST", "/api/signup", {"username": f"rot_{os.getpid()}", "password": "rotate-pass-1"})
    assert status == 201, body
    before = {name: SecretStore.for_stack(stack.name)[name] for name in ROTATED}

    # Every request needs the session (signed with the Django key, stored in Redis): /api/me
    # answers 401 without it, so a rejected signature or a refused Redis login is a failure.
    load = HttpLoad(box.http_port, ["/api/me", "/api/feed", "/health"], clients=2, max_seconds=300,
                    headers={"Cookie": f"photostack_session={user.session_cookie()}"}).start()
    try:
        load.wait_for_more(50)
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "ops", "secret", "rotate", *ROTATED],
                              capture_output=True, text=True, timeout=300)
        took = time.monotonic() - began
        assert done.returncode == 0, done.stdout + done.stderr
        load.wait_for_more(50)
    finally:
        result = load.stop()
        stack.reload_secrets()  # the rotation ran in another process; the drill's teardown converges
    print(f"\nrotation of {', '.join(ROTATED)} in {took:.1f}s under load: {result.describe()}")
    assert result.failed == 0, result.describe()

    after = SecretStore.for_stack(stack.name)
    for name in ROTATED:
        assert after[name] != before[name]
        assert after.rotating(name) is None  # the old value is retired
        assert before[name] not in done.stdout + done.stderr and after[name] not in done.stdout + done.stderr
    assert audit.trail(stack).read(1)[0].command == f"secret rotate {' '.join(ROTATED)}"
    assert audit.trail(stack).read(1)[0].outcome == "ok"

    def accepts(password: str) -> bool:
        try:
            return redis.Redis(host=box.address, port=box.redis_base_port, password=password, socket_timeout=5).ping()
        except redis.AuthenticationError:
            return False

    assert accepts(after["redisPassword"]) and not accepts(before["redisPassword"])
    assert user.json("GET", "/api/me")[0] == 200  # the session outlived the old key
