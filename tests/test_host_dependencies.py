"""A host's ops venv installs the run-time closure of pyproject's `dependencies` only (the
bundle's host-requirements.txt, from its wheelhouse): the Pulumi program's packages (the `program`
extra) are not there. Every module a host runs must import without them."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.utils import canonicalize_name

from infra.lockfile import LOCK_FILE, entries, parse, runtime_closure

REPO = Path(__file__).resolve().parent.parent
# What runs on a host: `ops converge --local` and the day-2 steps it takes there, the roles, the
# agents, the app; and what they import lazily on that path (the AWS target's secrets).
HOST_PACKAGES = ("ops", "roles", "monitoring", "app", "infra.targets")
LAZY_ON_HOSTS = ("infra.ssm_secrets", "infra.aws_inventory", "infra.host_keys")

IMPORT_ALL = """
import importlib, json, pkgutil, sys
blocked, packages, modules = json.loads(sys.argv[1])
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{name} is not installed on hosts")
sys.meta_path.insert(0, Blocked())
for package in packages:
    found = importlib.import_module(package)
    modules += [m.name for m in pkgutil.walk_packages(found.__path__, package + ".") if not m.name.endswith("__main__")]
failed = {}
for module in modules:
    try:
        importlib.import_module(module)
    except ImportError as error:
        failed[module] = str(error)
    except Exception:  # noqa: BLE001 - e.g. Django settings: only a missing package matters here
        pass
print(json.dumps(failed))
"""


def not_on_hosts() -> set[str]:
    """The top-level import names of locked distributions outside the host's closure."""
    host = {e.name for e in parse(runtime_closure())}
    absent = {e.name for e in entries(LOCK_FILE)} - host
    return {module for module, dists in packages_distributions().items()
            if any(canonicalize_name(d) in absent for d in dists)}


def test_pulumi_is_not_installed_on_hosts():
    blocked = not_on_hosts()
    assert {"pulumi", "pulumi_aws", "grpc"} <= blocked, sorted(blocked)


def test_every_module_a_host_runs_imports_without_the_program_packages():
    args = json.dumps([sorted(not_on_hosts()), list(HOST_PACKAGES), list(LAZY_ON_HOSTS)])
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL, args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "app.settings"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {}
