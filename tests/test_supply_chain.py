"""Supply chain: one lock file with hashes for every dependency, used by `make setup`, the hosts and
CI; the CI workflows pin their actions by commit, keep prod credentials out of pull requests, and
their `run:` steps work here (run where that is feasible, checked against the repo otherwise)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from infra.lockfile import LOCK_FILE, entries, normalize

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted(p for p in (REPO / "ci").glob("*.yml") if p.name != "dependabot.yml")
BIN = Path(sys.executable).parent
SHA = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")


def _project_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    return {normalize(pin.split("==")[0]): pin.split("==")[1] for pin in pins}


def test_the_lock_file_pins_every_project_pin_and_hashes_every_entry():
    locked = entries(LOCK_FILE)
    versions = {e.name: e.version for e in locked}
    assert {name: versions.get(name) for name in _project_pins()} == _project_pins()  # else: `make lock`
    unhashed = [e.name for e in locked if "--hash=sha256:" not in e.text]
    assert unhashed == [] and len(locked) > len(_project_pins())  # the transitive ones too


def test_make_setup_installs_the_lock_with_hashes_then_the_project_alone():
    done = subprocess.run(["make", "-n", "-B", ".venv/.installed"], cwd=REPO, capture_output=True, text=True, check=True)
    installs = [line for line in done.stdout.splitlines() if " install " in line]
    assert installs == [".venv/bin/pip install -q --require-hashes -r requirements.lock",
                        ".venv/bin/pip install -q --no-deps -e ."]


def _workflow(path: Path) -> dict:
    document = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    document["on"] = document.pop(True, document.get("on"))
    return document


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit(path):
    uses = [step["uses"] for job in _workflow(path)["jobs"].values() for step in job["steps"] if "uses" in step]
    assert uses and [u for u in uses if not SHA.match(u)] == []


def test_pull_request_jobs_hold_no_prod_credentials():
    workflow = _workflow(REPO / "ci" / "pull_request.yml")
    assert set(workflow["on"]) == {"pull_request"}
    for name, job in workflow["jobs"].items():
        text = yaml.safe_dump(job)
        assert "prod" not in str(job.get("environment", "")) and "production" not in text, name
        assert "DEPLOY_ROLE" not in text, name
        if "secrets." in text:  # only inside the staging-preview environment
            assert job.get("environment") == "staging-preview", name
        for step in job["steps"]:
            stack = (step.get("with") or {}).get("stack-name", "")
            assert not stack or stack.endswith("/staging"), (name, stack)
    assert "secrets." not in yaml.safe_dump({k: v for k, v in workflow.items() if k != "jobs"})


def test_prod_deploys_only_from_main_behind_the_approval_environment():
    workflow = _workflow(REPO / "ci" / "main.yml")
    assert workflow["on"] == {"push": {"branches": ["main"]}}
    prod = [job for job in workflow["jobs"].values() if "/prod" in yaml.safe_dump(job)]
    assert prod and all(job["environment"] == "production" and job.get("needs") == "staging" for job in prod)


def test_dependabot_watches_the_actions_and_the_python_pins():
    config = yaml.safe_load((REPO / "ci" / "dependabot.yml").read_text())
    assert config["version"] == 2
    assert {u["package-ecosystem"] for u in config["updates"]} == {"github-actions", "pip"}


def _run_lines() -> list[str]:
    lines = []
    for path in WORKFLOWS:
        for job in _workflow(path)["jobs"].values():
            for step in job["steps"]:
                lines += [line.split("  #")[0].strip() for line in step.get("run", "").splitlines() if line.strip()]
    return list(dict.fromkeys(lines))


# Run here as the workflow would, with this venv's executables: fast and offline.
RUN_HERE = (".venv/bin/ruff", ".venv/bin/ops")


def test_each_run_step_works_here():
    lines = _run_lines()
    assert any(line.startswith(RUN_HERE) for line in lines)
    for line in lines:
        argv = shlex.split(line)
        if line.startswith(RUN_HERE):
            argv[0] = str(BIN / Path(argv[0]).name)
            done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, (line, done.stdout[-2000:], done.stderr[-2000:])
        elif argv[:3] == [".venv/bin/python", "-m", "tests.run_groups"]:
            # Not the suite inside the suite: the group `make test` runs exists and its selection
            # collects tests (pytest exits 5 if none).
            from tests.run_groups import GROUPS

            name = argv[argv.index("--group") + 1]
            (markers,) = [group.markers for group in GROUPS if group.name == name]
            done = subprocess.run([str(BIN / "pytest"), "-m", markers, "--collect-only", "-q", "-p", "no:randomly"],
                                  cwd=REPO, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, (line, done.stdout[-2000:], done.stderr[-2000:])
        elif argv[:2] == ["sudo", "make"]:
            # Installs OS packages as root: here only that the target exists and what it would run.
            done = subprocess.run(["make", "-n", *argv[2:]], cwd=REPO, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0 and "apt-get install" in done.stdout, (line, done.stderr)
        elif argv[:2] == ["python", "-m"]:
            assert argv[2:] == ["venv", ".venv"], line
        elif argv[0] == ".venv/bin/pip":
            # Installs: every file they name exists, and the dependencies only come hash-checked.
            files = [argv[i + 1] for i, a in enumerate(argv) if a == "-r"]
            assert all((REPO / f).is_file() for f in files), line
            assert ("--require-hashes" in argv) if files else ("--no-deps" in argv), line
        else:
            pytest.fail(f"a run step this test does not know how to check: {line}")
