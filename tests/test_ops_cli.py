"""The `ops` CLI conventions: one --stack for every command, the exit-code table, errors on stderr."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ops.exit_codes import BAD_INPUT, OK

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def stacks(tmp_path, monkeypatch) -> Path:
    """A stacks dir with the shipped one-box stack and a `bad` one (a count written as `yes`)."""
    shutil.copy(ROOT / "Pulumi.onebox.yaml", tmp_path / "Pulumi.onebox.yaml")
    text = (ROOT / "Pulumi.onebox.yaml").read_text().replace("app: {count: 2,", "app: {count: yes,")
    (tmp_path / "Pulumi.bad.yaml").write_text(text)
    monkeypatch.setenv("PHOTOSTACK_STACKS_DIR", str(tmp_path))
    monkeypatch.setenv("PHOTOSTACK_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


def ops(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["ops", *args])
    from ops.cli import main

    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return exited.value.code or 0, out, err


@pytest.mark.parametrize("command", [
    ["alerts"], ["silence", "--list"], ["silence", "--for", "5m"], ["alert-flush"], ["pingdom", "sync"],
    ["status"], ["plan"], ["check"], ["converge", "--check"], ["deploy"], ["secret", "set", "dbPassword"],
], ids=lambda c: "-".join(c))
def test_global_stack_is_honoured_by_every_command(command, stacks, monkeypatch, capsys) -> None:
    code, out, err = ops(monkeypatch, capsys, "-s", "bad", *command)
    assert code == BAD_INPUT, out + err
    assert err.splitlines()[0].startswith("photostack:fleets.app.count: `yes`"), err
    assert "Traceback" not in out + err
    assert not (stacks / "state" / "onebox").exists(), "the global --stack was ignored: the one-box was used"


def test_command_stack_option_still_works(stacks, monkeypatch, capsys) -> None:
    code, _, err = ops(monkeypatch, capsys, "silence", "--list", "--stack", "bad")
    assert code == BAD_INPUT and "photostack:fleets.app.count" in err


@pytest.mark.parametrize("args", [["-s", "", "check"], ["check", "--stack", ""]])
def test_empty_stack_name_is_an_error_not_onebox(args, stacks, monkeypatch, capsys) -> None:
    code, out, err = ops(monkeypatch, capsys, *args)
    assert code == BAD_INPUT and out == ""
    assert err.splitlines() == ["--stack: empty stack name; give one, e.g. --stack onebox"]


def test_stack_name_pulumi_refuses(stacks, monkeypatch, capsys) -> None:
    code, _, err = ops(monkeypatch, capsys, "-s", "../etc/x", "check")
    assert code == BAD_INPUT and err.startswith("--stack: '../etc/x' is not a Pulumi stack name")


def test_version_and_short_help(monkeypatch, capsys) -> None:
    code, out, _ = ops(monkeypatch, capsys, "--version")
    assert code == OK and out.startswith("ops (photostack) ")
    code, out, _ = ops(monkeypatch, capsys, "-h")
    assert code == OK and "--stack NAME" in out and "TEXT" not in out


def test_json_outputs_parse(stacks, monkeypatch, capsys) -> None:
    code, out, _ = ops(monkeypatch, capsys, "check", "--json")
    assert code == OK and json.loads(out)["target"] == "onebox"
    code, out, _ = ops(monkeypatch, capsys, "plan", "--json")
    assert code == OK and json.loads(out)["resources"] == {}
    code, out, _ = ops(monkeypatch, capsys, "alerts", "--json")
    assert code == OK and json.loads(out)["open"] == []


def test_detailed_exitcode_goes_with_check(stacks, monkeypatch, capsys) -> None:
    code, _, err = ops(monkeypatch, capsys, "converge", "--detailed-exitcode")
    assert code == BAD_INPUT and err.strip() == "--detailed-exitcode: goes with --check"


def test_plan_warns_about_placeholder_secrets() -> None:
    done = subprocess.run([sys.executable, "-m", "ops", "-s", "staging", "plan", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == OK, done.stderr
    plan = json.loads(done.stdout)
    assert plan["resources"]["aws:ec2/instance:Instance"] >= 8
    assert "warning: photostack:dbPassword still holds the shipped placeholder" in done.stderr


def test_help_does_not_import_the_heavy_libraries() -> None:
    probe = ("import sys; sys.argv = ['ops', '--help']\nfrom ops.cli import app\ntry:\n    app()\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('pydantic', 'rich', 'fabric', 'sentry_sdk', 'pulumi', 'boto3') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


def test_aws_error_names_stack_region_and_step(tmp_path) -> None:
    # No credentials and no instance metadata: botocore fails before sending anything.
    env = {"PATH": "/usr/bin:/bin", "PHOTOSTACK_STATE_DIR": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    done = subprocess.run([sys.executable, "-m", "ops", "-s", "staging", "status"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: AWS call failed (stack staging, region us-east-1, step `ops status`): "
        "NoCredentialsError: Unable to locate credentials"
    ]


BOOM = """import sys
from ops import cli

@cli.app.command("boom")
def boom() -> None:
    raise RuntimeError("kaput")

sys.argv = ["ops", *sys.argv[1:], "boom"]
cli.main()
"""


def test_unexpected_error_is_one_line_naming_its_log(tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", BOOM], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: RuntimeError: kaput (traceback in ") and line.endswith("; --debug shows it)")
    log = Path(line.split("traceback in ")[1].split(";")[0])
    assert log.parent == tmp_path and "Traceback" in log.read_text() and "kaput" in log.read_text()
    debug = subprocess.run([sys.executable, "-c", BOOM, "--debug"], capture_output=True, text=True, cwd=ROOT, env=env,
                           timeout=60)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


@pytest.mark.parametrize(("command", "question"), [
    (("cache", "flush"), b"flush every Memcached node in stack onebox? [y/N]"),
    (("queue", "drain", "--queue", "thumbnails"),
     b"move up to 1000000 waiting message(s) of thumbnails to thumbnails.parked in stack onebox? [y/N]"),
])
def test_disruptive_command_at_a_terminal_asks_and_a_no_does_nothing(stacks, command, question) -> None:
    import os
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: the command with a terminal on stdin
        os.execv(sys.executable, [sys.executable, "-m", "ops", *command])
    output = b""
    while b"[y/N]" not in output:
        output += os.read(fd, 1024)
    os.write(fd, b"n\n")
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == BAD_INPUT
    assert question in output.replace(b"\r\n", b"") and b"nothing done" in output


@pytest.mark.parametrize("command", [
    ("replace-node", "app-0"), ("failover", "--shard", "0"), ("cache", "flush"), ("queue", "drain", "--queue", "feed"),
])
def test_on_an_aws_stack_a_script_must_pass_yes(tmp_path, command) -> None:
    """No terminal to ask on: exit 2 saying so, before anything is read of (or done to) AWS: its
    endpoint here is a closed port, and the state dir stays empty."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PHOTOSTACK_"))}
    env.update(AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x",
               PHOTOSTACK_STATE_DIR=str(tmp_path / "state"), COLUMNS="300")
    done = subprocess.run([sys.executable, "-m", "ops", "--stack", "staging", *command], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == BAD_INPUT, done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and line.endswith(" in stack staging: no terminal to confirm on; pass --yes")
    assert not any((tmp_path / "state").rglob("*.*"))


def _command_paths(command, prefix=()):
    subcommands = getattr(command, "commands", {})
    if not subcommands:
        yield prefix
    for name, sub in subcommands.items():
        yield from _command_paths(sub, (*prefix, name))


def test_every_help_is_free_of_type_tags() -> None:
    from typer.main import get_command
    from typer.testing import CliRunner

    from ops.cli import app

    paths = list(_command_paths(get_command(app)))
    assert ("converge",) in paths and ("queue", "drain") in paths
    for path in paths:
        result = CliRunner().invoke(app, [*path, "-h"])
        assert result.exit_code == 0, path
        for tag in ("TEXT", "INTEGER", "BOOLEAN", "FLOAT"):
            assert tag not in result.output, f"ops {' '.join(path)} -h shows {tag}"


@pytest.mark.onebox
def test_check_with_detailed_exitcode_is_3_when_changes_are_pending(onebox) -> None:
    def check() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ops", "converge", "--check", "--role", "nginx", "--detailed-exitcode",
                               "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300)

    assert check().returncode == OK
    with open("/etc/nginx/nginx.conf", "a") as handle:
        handle.write("# drift\n")
    try:
        pending = check()
        assert pending.returncode == 3, pending.stderr
        (host,) = json.loads(pending.stdout)
        assert {"resource": "file /etc/nginx/nginx.conf", "summary": "content differs"} in host["changed"]
    finally:
        subprocess.run([sys.executable, "-m", "ops", "converge", "--role", "nginx"], capture_output=True, cwd=ROOT, timeout=300)
    assert check().returncode == OK
