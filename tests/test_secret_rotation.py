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
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.secrets import SecretStore, slot_key
from ops import rotation
from ops.stack import Stack
from roles.context import desired_state
from roles.engine.resources import Command, File
from roles.redis.acl import ADMIN_USER, MUNIN_USER, acl_rules, munin_password
from roles.redis.role import acl_load
from tests.app_services import free_ports, wait_port

REPO = Path(__file__).resolve().parent.parent
ROTATABLE = "djangoSecretKey, redisPassword, rabbitmqPassword, dbPassword"


def kinds(steps: list[rotation.Step]) -> list[tuple[str, tuple[str, ...]]]:
    return [(s.kind, s.roles) for s in steps]


@pytest.fixture
def stack(state_root) -> Stack:
    return Stack.load("onebox")


def test_redis_password_plan_widens_servers_then_rolls_clients_then_narrows(stack) -> None:
    steps = rotation.plan([rotation.spec_for("redisPassword")], None, stack.hosts)
    servers = ("redis", "munin_node")
    assert kinds(steps) == [("store", ()), ("converge", servers), ("swap", ()), ("roll", ("app", "worker")),
                            ("retire", ()), ("converge", servers)]
    assert "onebox" in steps[1].text and "redisPassword.pending" in steps[0].text


def test_django_key_plan_rolls_the_app_three_times(stack) -> None:
    steps = rotation.plan([rotation.spec_for("djangoSecretKey")], None, stack.hosts)
    assert kinds(steps) == [("store", ()), ("roll", ("app",)), ("swap", ()), ("roll", ("app",)),
                            ("retire", ()), ("roll", ("app",))]
    # First every node accepts the new key before any node signs with it.
    assert "sign with the old key, accept the new one" in steps[1].text
    assert "sign with the new key, accept the old one" in steps[3].text


def test_broker_password_plan_deletes_the_old_login_before_retiring_the_value(stack) -> None:
    steps = rotation.plan([rotation.spec_for("rabbitmqPassword")], None, stack.hosts)
    servers = ("rabbitmq", "munin_node")
    assert kinds(steps) == [("store", ()), ("converge", servers), ("swap", ()), ("roll", ("app", "worker")),
                            ("drop", ("rabbitmq",)), ("retire", ()), ("converge", servers)]


def test_db_password_mid_roll_pgbouncer_knows_both_logins_and_the_app_uses_the_current(stack) -> None:
    from roles.postgres.auth import app_login

    steps = rotation.plan([rotation.spec_for("dbPassword")], None, stack.hosts)
    assert [s.kind for s in steps] == ["store", "converge", "swap", "roll", "drop", "retire", "converge"]
    assert steps[1].roles == ("postgres", "pgbouncer") and steps[4].roles == ("postgres",)
    salt, old = stack.secret("scramSaltKey"), stack.secret("dbPassword")
    stack.secrets.update({slot_key("dbPassword", "pending"): "new-db-value"})
    ctx = stack.context(stack.hosts[0])
    files = {r.path: r.content for r in desired_state("pgbouncer", ctx).resources if isinstance(r, File)}
    users = [line.split('"')[1] for line in files["/etc/pgbouncer/userlist.txt"].splitlines() if line.startswith('"')]
    assert {app_login(old, salt), app_login("new-db-value", salt), "photostack"} <= set(users)
    env = next(r.content for r in desired_state("app", ctx).resources
               if isinstance(r, File) and r.path == "/etc/photostack/app.env")
    assert f"PHOTOSTACK_DB_USER={app_login(old, salt)}\n" in env  # clients move only after the swap


def test_secrets_rotated_together_share_their_converges_and_rolls(stack) -> None:
    steps = rotation.steps_for(stack, ["djangoSecretKey", "redisPassword", "dbPassword"])
    servers = ("redis", "munin_node", "postgres", "pgbouncer")
    assert kinds(steps) == [("store", ()), ("converge", servers), ("roll", ("app",)), ("swap", ()),
                            ("roll", ("app", "worker")), ("drop", ("postgres",)), ("retire", ()),
                            ("converge", servers), ("roll", ("app",))]
    assert steps[0].names == ("djangoSecretKey", "redisPassword", "dbPassword")


def test_secrets_at_different_steps_are_refused_together(stack) -> None:
    stack.secrets.update({slot_key("redisPassword", "previous"): "old-value"})
    with pytest.raises(rotation.ConfigError, match="at different steps .*redisPassword: previous.*rotate each alone"):
        rotation.steps_for(stack, ["djangoSecretKey", "redisPassword"])


@pytest.mark.parametrize(("slot", "first"), [("pending", "converge"), ("previous", "roll")])
def test_an_interrupted_rotation_resumes_where_its_slot_says(stack, slot, first) -> None:
    stack.secrets.update({slot_key("redisPassword", slot): "other-value"})
    steps = rotation.steps_for(stack, ["redisPassword"])
    assert steps[0].kind == first
    assert [s.kind for s in steps][-2:] == ["retire", "converge"]


def test_every_rotatable_secret_has_a_rotation() -> None:
    from infra.secrets import ROTATABLE

    assert tuple(rotation.SPECS) == ROTATABLE  # hosts may read the overlap parameters of exactly these


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


def test_broker_logins_are_checked_with_the_password_they_should_have(stack) -> None:
    """The checks of the app's and munin's broker logins carry the password the converge sets, not
    a file it rewrites later in the same run (after a rotation that file proved the old one)."""
    from roles.rabbitmq.role import MUNIN_USER, _whoami_as, login_name, munin_password

    stack.secrets.update({slot_key("rabbitmqPassword", "pending"): "new-mq-value"})
    ctx = stack.context(stack.hosts[0])
    checks = {r.name: r.unless for r in desired_state("rabbitmq", ctx).resources if isinstance(r, Command)}
    api = f"http://{ctx.bind_address}:{ctx.defaults('rabbitmq')['rabbitmq_management_port']}/api"
    current = stack.secret("rabbitmqPassword")
    assert checks[f"user {MUNIN_USER}"] == _whoami_as(api, MUNIN_USER, munin_password(current))
    for password in (current, "new-mq-value"):
        login = login_name("photostack", password)
        assert checks[f"user {login}"] == _whoami_as(api, login, password)


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


def test_aws_overlap_parameters_round_trip_in_ssm(moto_account) -> None:
    """SsmSecrets (the AWS store of `ops secret rotate`) against moto's SSM over HTTP."""
    import boto3

    from infra.secrets_store import SsmSecrets, parameter_name

    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=moto_account,
                       aws_access_key_id="test", aws_secret_access_key="test")
    ssm.put_parameter(Name=parameter_name("prod", "redisPassword"), Value="old", Type="SecureString")
    store = SsmSecrets("prod", ssm)
    assert store.rotating("redisPassword") is None
    store.update({slot_key("redisPassword", "pending"): "new"})
    assert store.rotating("redisPassword") == ("pending", "new")
    store.update({slot_key("redisPassword", "previous"): "old", "redisPassword": "new",
                  slot_key("redisPassword", "pending"): None})
    assert (store.get("redisPassword"), store.also_accepted("redisPassword")) == ("new", "old")
    store.update({slot_key("redisPassword", "previous"): None})
    assert store.rotating("redisPassword") is None
    stored = ssm.get_parameter(Name="/photostack/prod/redisPassword", WithDecryption=True)["Parameter"]
    assert (stored["Type"], stored["Value"]) == ("SecureString", "new")


# --- the mechanics on a real Redis ------------------------------------------------------------

def _redis(port: int, user: str | None, password: str) -> redis.Redis:
    # No retries: redis-py retries a refused login (an AuthenticationError is a ConnectionError)
    # with backoff, seconds for each refusal this test expects, and the same refusal every time.
    return redis.Redis(port=port, username=user, password=password, socket_timeout=5, retry=Retry(NoBackoff(), 0))


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


def test_postgres_and_pgbouncer_take_both_logins_mid_roll_and_only_new_after() -> None:
    """The roles' SQL and pgbouncer's SCRAM userlist on a real Postgres (password auth over TCP)
    and a real pgbouncer passing the client's SCRAM keys on: one login per password, each acting
    as `photostack`; both log in during the overlap, only the new one after the old is dropped."""
    import shutil
    import signal
    import tempfile

    import psycopg

    from roles.postgres import commands
    from roles.postgres.auth import APP_USER, app_login, scram_verifier
    from tests.app_services import PG_BIN, as_user

    pg_port, bouncer_port = free_ports(2)
    tmp_path = Path(tempfile.mkdtemp(prefix="photostack-rotation-"))  # postgres must reach it (not under root's 0700)
    tmp_path.chmod(0o755)
    data, bouncer = tmp_path / "pg", tmp_path / "bouncer"
    for d in (data, bouncer):
        d.mkdir()
        shutil.chown(d, "postgres", "postgres")
    subprocess.run(as_user("postgres", [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
                                        "--auth-host=scram-sha-256", "--no-sync"]), check=True, capture_output=True)
    opts = f"-p {pg_port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(as_user("postgres", [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(data / "log"),
                                        "-w", "start"]), check=True, capture_output=True)
    salt, old, new = "stack-salt-key", "old-db-pw", "new-db-pw"
    bouncer_proc = None
    try:
        admin = psycopg.connect(host=str(data), port=pg_port, user="postgres", dbname="postgres", autocommit=True)
        admin.execute(f"CREATE ROLE {APP_USER} NOLOGIN")
        admin.execute(f"CREATE DATABASE shard0 OWNER {APP_USER}")

        def converge(*passwords: str) -> None:
            """What the postgres and pgbouncer roles render for these accepted passwords."""
            logins = {app_login(pw, salt): scram_verifier(app_login(pw, salt), pw, salt) for pw in passwords}
            admin.execute(commands.roles_sql(logins, tuple(logins)))
            assert admin.execute(commands.roles_match(logins, tuple(logins))).fetchone()[0] is True
            (bouncer / "userlist.txt").write_text("".join(f'"{u}" "{v}"\n' for u, v in logins.items()))
            if bouncer_proc is not None:  # `service pgbouncer reload`: SIGHUP to pgbouncer itself
                os.kill(int((bouncer / "pid").read_text()), signal.SIGHUP)
                # Reloaded once the userlist's last login gets in (the signal is handled asynchronously).
                deadline = time.monotonic() + 10
                while refused(passwords[-1], bouncer_port):
                    assert time.monotonic() < deadline, "pgbouncer did not reload its userlist"
                    time.sleep(0.1)

        def login(password: str, port: int) -> psycopg.Connection:
            return psycopg.connect(host="127.0.0.1", port=port, dbname="shard0", user=app_login(password, salt),
                                   password=password, autocommit=True, prepare_threshold=None, connect_timeout=5)

        def refused(password: str, port: int) -> bool:
            try:
                login(password, port).close()
            except psycopg.OperationalError:
                return True
            return False

        converge(old)
        (bouncer / "pgbouncer.ini").write_text(
            f"[databases]\nshard0 = host=127.0.0.1 port={pg_port} dbname=shard0\n[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {bouncer_port}\nunix_socket_dir =\nauth_type = scram-sha-256\n"
            f"auth_file = {bouncer / 'userlist.txt'}\npool_mode = transaction\n"
            f"logfile = {bouncer / 'log'}\npidfile = {bouncer / 'pid'}\n")
        for item in bouncer.iterdir():
            shutil.chown(item, "postgres")
        bouncer_proc = subprocess.Popen(as_user("postgres", ["pgbouncer", str(bouncer / "pgbouncer.ini")]),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(bouncer_port, bouncer_proc, 10, "pgbouncer")
        with login(old, bouncer_port) as conn:
            conn.execute("CREATE TABLE made_by_old (id int)")
            assert conn.execute("SELECT current_user").fetchone()[0] == APP_USER
        assert refused(new, bouncer_port)

        converge(old, new)  # the overlap
        for password in (old, new):
            for port in (bouncer_port, pg_port):
                with login(password, port) as conn:
                    assert conn.execute("SELECT current_user").fetchone()[0] == APP_USER
        with login(new, bouncer_port) as conn:
            conn.execute("INSERT INTO made_by_old VALUES (1)")  # the table is photostack's, not a login's

        admin.execute(commands.drop_login_sql(app_login(old, salt)))  # the rotation's drop step
        converge(new)  # retired (the new login was in before, so wait for the old one's refusal)
        deadline = time.monotonic() + 10
        while not refused(old, bouncer_port):
            assert time.monotonic() < deadline, "pgbouncer still takes the retired login"
            time.sleep(0.1)
        assert refused(old, pg_port)
        with login(new, bouncer_port) as conn:
            assert conn.execute("SELECT count(*) FROM made_by_old").fetchone()[0] == 1
        admin.close()
        with psycopg.connect(host=str(data), port=pg_port, user="postgres", dbname="shard0") as shard:
            owner = shard.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'made_by_old'").fetchone()
        assert owner == (APP_USER,)
    finally:
        if bouncer_proc is not None:
            bouncer_proc.terminate()
            bouncer_proc.wait(timeout=10)
        subprocess.run(as_user("postgres", [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(tmp_path, ignore_errors=True)
