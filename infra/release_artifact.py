"""The app release as a built artifact: made once per version where the checkout is, read on hosts.

A release is what the app and workers run: the repo's tracked (and not ignored) files under
`app/`, `pyproject.toml`, and the project modules `app/` imports, followed through the source
(the stack model, sharding, the Sentry set-up), packed into a deterministic tar.gz. Its version is
the last commit that changed those files or the lock file (`git describe --always`) when they
are clean, else `<commit>-dirty-<content hash>`, so the same tree always gives the same version
and re-shipping it is a no-op. The rest of `infra/` (the Pulumi program) and of `monitoring/`
(host agents) does not ship: an edit of a CloudWatch alarm keeps the version, and the app fleet
keeps running.

Building needs the git checkout (the operator's machine, CI). A host has none: it reads the
artifact the release bundle carries (`infra/storage.py`), written here by `write` as two files,
`release.json` (version and the pinned requirements) and `files.tar.gz`. Hosts and operator then
agree on the version, so an operator's converge after a host's first boot changes nothing.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from infra.config import REPO_ROOT
from infra.lockfile import LOCK_FILE, closure

LOCK_NAME = LOCK_FILE.name
# What the app and workers run: the Django app, with the files below, and the modules of
# PROJECT_PACKAGES it imports (transitively); requirements.lock carries the pins.
APP_DIR = "app"
SHIPPED_FILES = ("pyproject.toml",)
PROJECT_PACKAGES = ("infra", "monitoring")
# What the version follows besides the shipped files: the lock file, whose pins build the venv
# (the requirements travel in the venv step, not the tarball): a new pin alone is a new release.
VERSION_FILES = ("requirements.lock",)
# The app's third-party imports (pins from pyproject.toml). hiredis: redis-py's C reply parser
# (half the CPU of an LRANGE of a feed page), picked up by redis-py when installed.
APP_PACKAGES = (
    "django", "gunicorn", "celery", "psycopg[binary]", "psycopg-pool", "redis", "hiredis", "pymemcache",
    "pillow", "sentry-sdk", "boto3", "pydantic", "pyyaml",
    "croniter",  # infra/config.py validates the stack config's schedules with it
)
# Where the artifact sits in the release bundle (infra/storage.py; the user_data names it).
BUNDLE_ARTIFACT = "artifact"
META = "release.json"
FILES = "files.tar.gz"
BUILD_DIR = Path("build", "releases")  # in the checkout, git-ignored


@dataclass(frozen=True)
class Artifact:
    """One built release: its version, its files and the pins of its venv."""

    version: str
    tarball: bytes  # gzip'd tar of the release files (deterministic: same tree, same bytes)
    requirements: str  # pinned requirement lines (with hashes) for the venv


def requirements(repo: Path = REPO_ROOT, names: tuple[str, ...] = APP_PACKAGES) -> str:
    """Requirements with hashes for `names` and everything they need, from the repo's one lock
    file (infra/lockfile.py): the hosts run the very files CI and `make setup` verified."""
    return closure(names, repo / LOCK_NAME)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def _listed(repo: Path, *paths: str) -> set[str]:
    """Tracked and untracked-but-not-ignored files under `paths`."""
    out = _git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths)
    return {name for name in out.split("\0") if name and (repo / name).is_file()}


def imported_modules(source: str) -> set[str]:
    """Every absolute module name a Python source may import (`from a import b`: `a` and `a.b`),
    wherever the import statement is."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module_files(name: str) -> list[str]:
    """The files importing module `name` loads: each package's `__init__.py` on the way, and the
    module itself (`a/b.py` or the package `a/b/__init__.py`)."""
    parts = name.split(".")
    packages = [f"{'/'.join(parts[:i])}/__init__.py" for i in range(1, len(parts) + 1)]
    return [*packages, f"{'/'.join(parts)}.py"]


def release_files(repo: Path = REPO_ROOT) -> list[str]:
    """What ships, sorted: `app/`, SHIPPED_FILES, and the modules of PROJECT_PACKAGES that the
    shipped Python files import, transitively."""
    candidates = _listed(repo, APP_DIR, *SHIPPED_FILES, *PROJECT_PACKAGES)
    shipped = {n for n in candidates if n.startswith(f"{APP_DIR}/") or n in SHIPPED_FILES}
    unread = [n for n in shipped if n.endswith(".py")]
    while unread:
        for module in imported_modules((repo / unread.pop()).read_text()):
            if module.split(".")[0] not in PROJECT_PACKAGES:
                continue
            for name in _module_files(module):
                if name in candidates and name not in shipped:
                    shipped.add(name)
                    unread.append(name)
    return sorted(shipped)


def pack(repo: Path, files: list[str]) -> bytes:
    """A deterministic tar.gz of `files` (fixed owner, mtime and order)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in files:
            data = (repo / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.uname, info.gname = len(data), 0, "root", "root"
            info.mode = 0o755 if (repo / name).stat().st_mode & 0o111 else 0o644
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def version_paths(files: list[str]) -> list[str]:
    """What the version follows: `app/` as a whole (a file removed from it counts too), the other
    shipped files, and VERSION_FILES."""
    return [APP_DIR, *(f for f in files if not f.startswith(f"{APP_DIR}/")), *VERSION_FILES]


def last_shipped_commit(repo: Path = REPO_ROOT, files: list[str] | None = None) -> str:
    """The last commit that changed what ships (`files`: release_files). A commit of docs, roles,
    tests, or the Pulumi program alone keeps the release version, so the next converge leaves the
    app servers running instead of restarting them all."""
    paths = version_paths(release_files(repo) if files is None else files)
    return _git(repo, "rev-list", "-1", "HEAD", "--", *paths).strip() or "HEAD"


def build(repo: Path = REPO_ROOT) -> Artifact:
    """The release of the working tree of the git checkout `repo`."""
    files = release_files(repo)
    tarball = pack(repo, files)
    commit = _git(repo, "describe", "--always", "--abbrev=12", last_shipped_commit(repo, files)).strip()
    dirty = _git(repo, "status", "--porcelain", "--", *version_paths(files)).strip()
    version = f"{commit}-dirty-{hashlib.sha256(tarball).hexdigest()[:10]}" if dirty else commit
    return Artifact(version, tarball, requirements(repo))


def write(artifact: Artifact, directory: Path) -> Path:
    """Write the artifact into `directory` (the files first, the metadata last: a directory
    without `release.json` is incomplete) and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / FILES).write_bytes(artifact.tarball)
    meta = json.dumps({"version": artifact.version, "requirements": artifact.requirements}, sort_keys=True)
    (directory / f"{META}.tmp").write_text(meta)
    (directory / f"{META}.tmp").replace(directory / META)
    return directory


def read(directory: Path) -> Artifact:
    """The artifact `write` put in `directory`."""
    meta = json.loads((directory / META).read_text())
    return Artifact(meta["version"], (directory / FILES).read_bytes(), meta["requirements"])


def built(repo: Path = REPO_ROOT) -> Path:
    """The directory holding the artifact of the working tree's version, written once per version
    under the checkout's git-ignored `build/releases/` (a later call for the same version reuses it)."""
    artifact = build(repo)
    directory = repo / BUILD_DIR / artifact.version
    return directory if (directory / META).is_file() else write(artifact, directory)
