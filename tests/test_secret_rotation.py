"""`ops secret rotate NAME` without the one-box: the step plan per secret and where a rotation
resumes, the store's overlap slots, what the roles render mid-roll, the command's refusals and
dry run; and the mechanics on real servers (Redis with two passwords, Django's signing with a
fallback key) showing old and new accepted mid-roll and only the new one after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from infra.secrets import SecretStore, slot_key
from ops import rotation
from ops.stack import Stack
from roles.engine.context import desired_state
from roles.engine.resources import Command, File
from roles.redis.acl import ADMIN_USER, MUNIN_USER, acl_rules, munin_password
from roles.redis.role import acl_load
from tests.app_services import free_ports, wait_port

REPO = Path(__file__).resolve().parent.parent
ROTATABLE = "djangoSecretKey, redisPassword, rabbitmqPassword"


def kinds(steps: list[rotation.Step]) -> list[tuple[str, tuple[str, ...]]]:
    return [(s.kind, s.roles) for s in steps]


@pytest.fixture
def stack(state_root) -> Stack:
    return Stack.load("onebox")


def test_redis_password_plan_widens_servers_then_rolls_clients_then_narrows(stack) -> None:
    steps = rotation.plan(rotation.spec_for("redisPassword"), None, stack.hosts)
    servers = ("redis", "munin_node")
    assert kinds(steps) == [("store", ()), ("converge", servers), ("swap", ()), ("roll", ("app", "worker")),
                            ("retire", ()), ("converge", servers)]
    assert "onebox" in steps[1].text and "redisPassword.pending" in steps[0].text


def test_django_key_plan_rolls_the_app_three_times(stack) -> None:
    steps = rotation.plan(rotation.spec_for("djangoSecretKey"), None, stack.hosts)
    assert kinds(steps) == [("store", ()), ("roll", ("app",)), ("swap", ()), ("roll", ("app",)),
                            ("retire", ()), ("roll", ("app",))]
    # First every node accepts the new key before any node signs with it.
    assert "sign with the old key, accept the new one" in steps[1].text
    assert "sign with the new key, accept the old one" in steps[3].text


def test_broker_password_plan_deletes_the_old_login_before_retiring_the_value(stack) -> None:
    steps = rotation.plan(rotation.spec_for("rabbitmqPassword"), None, stack.hosts)
    servers = ("rabbitmq", "munin_node")
    assert kinds(steps) == [("store", ()), ("converge", servers), ("swap", ()), ("roll", ("app", "worker")),
                            ("drop", ("rabbitmq",)), ("retire", ()), ("converge", servers)]


@pytest.mark.parametrize(("slot", "first"), [("pending", "converge"), ("previous", "roll")])
def test_an_interrupted_rotation_resumes_where_its_slot_says(stack, slot, first) -> None:
    stack.secrets.update({slot_key("redisPassword", slot): "other-value"})
    steps = rotation.steps_for(stack, "redisPassword")
    assert steps[0].kind == first
    assert [s.kind for s in steps][-2:] == ["retire", "converge"]


def test_unknown_name_is_one_line() -> None:
    with pytest.raises(rotation.ConfigError) as error:
        rotation.spec_for("dbPasswrd")
    assert error.value.problems == [
        f"ops secret rotate dbPasswrd: not a rotatable secret (rotatable: {ROTATABLE})"]


def test_swap_is_one_write_and_roles_accept_both_values_mid_roll(stack) -> None:
    store = stack.secrets
    old = store["redisPassword"]
    store.update({slot_key("redisPassword", "pending"): "new-redis-value"})
    ctx = stack.context(stack.hosts[0])
    assert ctx.accepted("redisPassword") == [old, "new-redis-value"]
    files = {r.path: r.content for r in desired_state("redis", ctx).resources if isinstance(r, File)}
    acl = next(content for path, content in files.items() if path.endswith(".acl"))
    assert acl.splitlines()[0] == acl_rules([old, "new-redis-value"], "x", "x")[0]
    assert "new-redis-value" not in acl and old not in acl  # hashes only

    # The swap: current and previous change together in the file.
    store.update({slot_key("redisPassword", "previous"): old, "redisPassword": "new-redis-value",
                  slot_key("redisPassword", "pending"): None})
    saved = json.loads((stack.state / "secrets.json").read_text())
    assert saved["redisPassword"] == "new-redis-value" and saved["redisPassword.previous"] == old
    assert "redisPassword.pending" not in saved
    assert (stack.state / "secrets.json").stat().st_mode & 0o777 == 0o600
    assert SecretStore.for_stack("onebox").rotating("redisPassword") == ("previous", old)


def test_app_env_carries_the_fallback_key_only_while_the_key_rotates(stack) -> None:
    def env() -> str:
        ctx = stack.context(next(h for h in stack.hosts if "app" in h.roles))
        return next(r.content for r in desired_state("app", ctx).resources
                    if isinstance(r, File) and r.path == "/etc/photostack/app.env")

    assert "DJANGO_SECRET_KEY_FALLBACK" not in env()
    stack.secrets.update({slot_key("djangoSecretKey", "pending"): "the-new-key"})
    assert "DJANGO_SECRET_KEY_FALLBACK=the-new-key\n" in env()


def test_no_redis_password_on_a_command_line(stack) -> None:
    stack.secrets.update({slot_key("redisPassword", "pending"): "new-redis-value"})
    state = desired_state("redis", stack.context(stack.hosts[0]))
    texts = [t for r in state.resources if isinstance(r, Command) for t in (r.run, r.unless)]
    texts += [h.run for h in state.handlers]
    secrets = [stack.secret("redisPassword"), "new-redis-value", stack.secret("redisAdminPassword")]
    assert any("ACL LOAD" in t for t in texts)
    assert [t for t in texts for s in secrets if s in t] == []


def ops(*args: str, state_root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PHOTOSTACK_STATE_DIR": str(state_root)}
    return subprocess.run([sys.executable, "-m", "ops", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


def test_bad_name_exits_2_with_one_line(state_root) -> None:
    done = ops("secret", "rotate", "nope", state_root=state_root)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"ops secret rotate nope: not a rotatable secret (rotatable: {ROTATABLE})"]


def test_dry_run_prints_the_steps_changes_nothing_and_shows_no_value(state_root) -> None:
    done = ops("secret", "rotate", "redisPassword", "--dry-run", state_root=state_root)
    assert done.returncode == 0, done.stderr
    store = json.loads((state_root / "onebox" / "secrets.json").read_text())
    assert not [k for k in store if "." in k]  # nothing stored
    lines = done.stdout.splitlines()
    assert lines[0] == "would:" and len(lines) == 7 and "converge redis, munin_node on onebox" in lines[2]
    assert not [v for v in store.values() if v in done.stdout]
    assert not (state_root / "onebox" / "audit.log").exists()


# --- the mechanics on a real Redis ------------------------------------------------------------

def _redis(port: int, user: str | None, password: str) -> redis.Redis:
    return redis.Redis(port=port, username=user, password=password, socket_timeout=5)


def _accepts(port: int, user: str | None, password: str) -> bool:
    try:
        return _redis(port, user, password).ping()
    except redis.AuthenticationError:
        return False


def test_redis_accepts_old_and_new_mid_roll_and_only_new_after(tmp_path: Path) -> None:
    """The role's own ACL lines and ACL LOAD handler on a real redis-server: no restart, a client
    connected with the old password stays connected, munin's derived login follows."""
    port = free_ports(1)[0]
    admin, old, new = "admin-pw", "old-app-pw", "new-app-pw"
    users, auth = tmp_path / "users.acl", tmp_path / "admin.auth"
    auth.write_text(admin)

    def acl(*passwords: str) -> None:
        users.write_text("\n".join(acl_rules(list(passwords), admin, "photostack:counter:*")) + "\n")

    def reload() -> None:
        done = subprocess.run(["bash", "-c", acl_load("127.0.0.1", port, str(auth))], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

    acl(old)
    conf = tmp_path / "redis.conf"
    conf.write_text(f'bind 127.0.0.1\nport {port}\ndir {tmp_path}\nsave ""\naclfile {users}\n')
    server = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL)
    try:
        wait_port(port, server, 10, "redis")
        connected = _redis(port, None, old)
        connected.set("k", "v")
        assert not _accepts(port, None, new)

        acl(old, new)  # the overlap
        reload()
        assert _accepts(port, None, old) and _accepts(port, None, new)
        assert _accepts(port, MUNIN_USER, munin_password(old)) and _accepts(port, MUNIN_USER, munin_password(new))

        acl(new)  # retired
        reload()
        assert not _accepts(port, None, old) and not _accepts(port, MUNIN_USER, munin_password(old))
        assert _accepts(port, None, new) and _accepts(port, MUNIN_USER, munin_password(new))
        assert _redis(port, ADMIN_USER, admin).ping()
        assert connected.get("k") == b"v"  # same server, data kept: nothing restarted
        assert server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_django_session_signed_with_the_old_key_survives_the_rotation(app_stack) -> None:
    """app/sessions.py on the real Redis of the throwaway stack: a session saved under key K1 loads
    while K1 is a fallback, is re-signed with K2 on that request, and loads after K1 is retired."""
    from django.conf import settings
    from django.test import override_settings

    import app.settings  # noqa: F401 — configures Django from the stack's environment
    from app.sessions import SessionStore

    k1, k2 = "old-key-" + "x" * 40, "new-key-" + "y" * 40
    with override_settings(SECRET_KEY=k1, SECRET_KEY_FALLBACKS=[]):
        session = SessionStore()
        session["user"] = "alice"
        session.create()
        key = session.session_key
    with override_settings(SECRET_KEY=k2, SECRET_KEY_FALLBACKS=[]):
        assert SessionStore(key).load() == {}  # without the fallback: not valid
    with override_settings(SECRET_KEY=k2, SECRET_KEY_FALLBACKS=[k1]):
        during = SessionStore(key)
        assert during.load()["user"] == "alice" and during.modified
        during.save()  # what SessionMiddleware does with a modified session
        fresh = SessionStore(key)
        assert fresh.load()["user"] == "alice" and not fresh.modified  # signed with k2 now
    with override_settings(SECRET_KEY=k2, SECRET_KEY_FALLBACKS=[]):
        assert SessionStore(key).load()["user"] == "alice"
    assert settings.SECRET_KEY_FALLBACKS == []


def test_rabbitmq_logins_old_and_new_mid_roll_and_only_new_after(app_stack) -> None:
    """The role's login commands and the rotation's drop script against the throwaway broker:
    one login per password, both connect during the overlap, the old one is gone after."""
    import amqp

    from roles.rabbitmq.role import _app_login, drop_logins, login_name

    old, new = "old-broker-pw", "new-broker-pw"
    home = app_stack.root / "rabbitmq"
    # The unwrapped rabbitmqctl first: the packaged wrapper would reset HOME (the cookie's home).
    env = {"HOME": str(home), "RABBITMQ_NODENAME": f"pstest{app_stack.amqp_port}@localhost",
           "ERL_EPMD_PORT": str(_epmd_port(app_stack)), "PATH": f"/usr/lib/rabbitmq/bin:{os.environ['PATH']}"}

    def ctl(script: str) -> None:
        done = subprocess.run(["runuser", "-u", "rabbitmq", "--", "env", *(f"{k}={v}" for k, v in env.items()),
                               "bash", "-c", script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    def connect(password: str) -> amqp.Connection:
        conn = amqp.Connection(f"127.0.0.1:{app_stack.amqp_port}", userid=login_name("photostack", password),
                               password=password, virtual_host="/", connect_timeout=5)
        conn.connect()
        return conn

    assert login_name("photostack", old) != login_name("photostack", new)
    ctl(_app_login(login_name("photostack", old), old, "/", "unused").run)
    before = connect(old)
    ctl(_app_login(login_name("photostack", new), new, "/", "unused").run)  # the overlap
    connect(old).close()
    connect(new).close()

    ctl(drop_logins([login_name("photostack", old), "photostack"]))  # "photostack" absent here: fine
    with pytest.raises(amqp.exceptions.AccessRefused):
        connect(old)
    connect(new).close()
    with pytest.raises((OSError, amqp.exceptions.AMQPError)):  # RabbitMQ closed the old login's connection
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            before.channel().queue_declare(f"rotation-check-{time.time_ns()}", auto_delete=True)
            time.sleep(0.2)
    ctl(drop_logins([login_name("photostack", new)]))


def _epmd_port(stack) -> int:
    """The throwaway broker's own epmd port (tests/app_services.py starts one per stack)."""
    argv = Path(f"/proc/{stack.procs['epmd'].pid}/cmdline").read_bytes().split(b"\0")
    return int(argv[argv.index(b"-port") + 1])
