"""The engine without SSH: recorded facts in, plans out (one JSON case per starting state)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from roles.engine import resources
from roles.engine.changes import apply_script, fact_script, make_plan, parse_apply_output
from roles.engine.resources import Change, DesiredState, File, Handler, Packages, Service

CASES = sorted((Path(__file__).parent / "engine_cases").glob("*.json"))


def build(spec: dict):
    args = dict(spec["args"])
    for key in ("names", "notify"):
        if key in args:
            args[key] = tuple(args[key])
    return getattr(resources, spec["type"])(**args)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(path: Path) -> None:
    case = json.loads(path.read_text())
    resource = build(case["resource"])
    changes = resource.changes(case["fact"])
    assert len(changes) == len(case["changes"])
    for change, expected in zip(changes, case["changes"]):
        assert change.resource == expected["resource"]
        if "summary" in expected:
            assert change.summary == expected["summary"]
        if "commands" in expected:
            assert list(change.commands) == expected["commands"]
        assert list(change.notify) == expected.get("notify", [])
        for text in expected.get("diff_contains", []):
            assert text in change.diff
        for text in expected.get("diff_excludes", []):
            assert text not in change.diff


def test_fact_script_round_trips_through_markers() -> None:
    state = DesiredState([File("/a", "x"), File("/b", "y")])
    script = fact_script(state)
    output = f"{script.marker}0\nroot root 644\neA==\n{script.marker}1\nmissing\n"
    assert script.parse(output, 2) == ["root root 644\neA==", "missing"]


def test_package_checks_share_one_dpkg_listing_read_on_this_machine() -> None:
    """The dpkg listing is made once per fact script, and each Packages resource still sees only
    its own packages: an installed one is ok, an unknown one is to be installed."""
    state = DesiredState([Packages(("bash", "coreutils")), Packages(("bash", "photostack-no-such-package"))])
    script = fact_script(state)
    assert script.text.count("dpkg-query") == 1
    output = subprocess.run(["bash", "-c", script.text], capture_output=True, text=True, check=True).stdout
    installed, partly = script.parse(output, 2)
    assert sorted(line.split()[0] for line in installed.splitlines()) == ["bash", "coreutils"]
    assert state.resources[0].changes(installed) == []
    assert [c.resource for c in state.resources[1].changes(partly)] == ["packages photostack-no-such-package"]


def test_plan_counts_ok_and_notifies_each_handler_once() -> None:
    state = DesiredState(
        [File("/a", "x", notify=("reload",)), File("/b", "y", notify=("reload",)), File("/c", "z")],
        [Handler("reload", "kill -HUP 1"), Handler("restart", "x")],
    )
    plan = make_plan(state, ["missing", "missing", "root root 644\neg=="])
    assert plan.ok == 1 and len(plan.changes) == 2
    assert [h.name for h in plan.notified_handlers(plan.changes)] == ["reload"]


def test_notifying_an_unknown_handler_is_an_error() -> None:
    state = DesiredState([File("/a", "x", notify=("nope",))])
    with pytest.raises(ValueError, match="nope"):
        make_plan(state, ["missing"])


def test_apply_script_stops_at_first_failure_but_loads_what_it_applied(tmp_path: Path) -> None:
    import subprocess

    changes = [
        Change("one", "", (f"touch {tmp_path}/one",), notify=("reload",)),
        Change("two", "", ("echo boom; false",), notify=("restart",)),
        Change("three", "", (f"touch {tmp_path}/three",), notify=("restart",)),
    ]
    handlers = [Handler("reload", f"touch {tmp_path}/reloaded"), Handler("restart", f"touch {tmp_path}/restarted")]
    script, marker = apply_script(changes, handlers)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True).stdout
    steps = parse_apply_output(out, marker)
    assert [(s.index, s.rc) for s in steps] == [(0, 0), (1, 1), (3, 0)]
    assert steps[1].output == "boom"
    assert (tmp_path / "one").exists() and not (tmp_path / "three").exists()
    # "one" was applied, so its handler runs; "restart" was notified only by changes that did not apply.
    assert (tmp_path / "reloaded").exists() and not (tmp_path / "restarted").exists()


@pytest.mark.skipif(Path("/run/systemd/system").is_dir(), reason="systemd runs here: `service` would use it")
def test_service_commands_work_without_systemd(tmp_path) -> None:
    """A package's init script driven by the Service's own commands, on a machine without systemd
    (the one-box): start, status, stop answer as the engine expects."""
    name = f"photostack-test-{os.getpid()}"
    script = Path("/etc/init.d") / name
    pidfile = tmp_path / "daemon.pid"
    script.write_text(f"""#!/bin/sh
case "$1" in
  start) sleep 300 >/dev/null 2>&1 & echo $! > {pidfile} ;;
  status) [ -f {pidfile} ] && kill -0 "$(cat {pidfile})" 2>/dev/null ;;
  stop) [ -f {pidfile} ] && kill "$(cat {pidfile})" && rm -f {pidfile} ;;
esac
""")
    script.chmod(0o755)
    service = Service.init_script(name)
    run = lambda command: subprocess.run(["bash", "-c", command], capture_output=True, timeout=30).returncode  # noqa: E731
    try:
        assert run(service.status) != 0
        assert run(service.start) == 0 and run(service.status) == 0
        assert run(service.stop) == 0 and run(service.status) != 0 and not pidfile.exists()
    finally:
        run(service.stop)
        script.unlink()


def test_every_template_has_a_managed_by_header() -> None:
    templates = list((Path(__file__).parent.parent / "roles").glob("*/templates/*.j2"))
    assert templates
    for template in templates:
        head = template.read_text().splitlines()[:2]  # a script's header follows its shebang
        assert any("{{ managed_by }}" in line for line in head), template


def test_a_handler_does_not_restart_a_service_this_converge_started_after_its_notifier(tmp_path: Path) -> None:
    """Puppet's rule: the service started after the config changed already runs it. One started
    before the change (or one not started here) is restarted."""
    import subprocess

    def service(name: str) -> Service:
        return Service(name, start=f"echo start >> {tmp_path}/{name}", status="false", stop="true")

    fresh, running, early = service("fresh"), service("running"), service("early")
    changes = [
        *early.changes("stopped"),
        Change("file /etc/app.conf", "content differs", (f"touch {tmp_path}/conf",), notify=("restart",)),
        *fresh.changes("stopped"),
    ]
    handler = Handler("restart", f"echo prelude >> {tmp_path}/prelude", restarts=(fresh, running, early))
    script, marker = apply_script(changes, [handler])
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True).stdout
    assert [(s.index, s.rc) for s in parse_apply_output(out, marker)] == [(0, 0), (1, 0), (2, 0), (3, 0)]
    assert (tmp_path / "fresh").read_text() == "start\n"  # started once, by its own change
    assert (tmp_path / "running").read_text() == "start\n"  # restarted by the handler
    assert (tmp_path / "early").read_text() == "start\nstart\n"  # started before the change: restarted
    assert (tmp_path / "prelude").read_text() == "prelude\n"
