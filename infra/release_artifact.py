"""The app release as a built artifact: made once per version where the checkout is, read on hosts.

A release is the repo's tracked (and not ignored) files under RELEASE_PATHS, packed into a
deterministic tar.gz. Its version is the last commit that changed those paths (`git describe
--always`) when they are clean, else `<commit>-dirty-<content hash>`, so the same tree always
gives the same version and re-shipping it is a no-op.

Building needs the git checkout (the operator's machine, CI). A host has none: it reads the
artifact the release bundle carries (`infra/storage.py`), written here by `write` as two files,
`release.json` (version and the pinned requirements) and `files.tar.gz`. Hosts and operator then
agree on the version, so an operator's converge after a host's first boot changes nothing.
"""

from __future__ import annotations

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
# What the app and workers import: the Django app, the stack config/sharding it reads, and the
# shared Sentry set-up; requirements.lock carries the pins.
RELEASE_PATHS = ("app", "infra", "monitoring", "pyproject.toml")
# What the version follows: the shipped files and the lock file, whose pins build the venv (the
# requirements travel in the venv step, not the tarball): a new pin alone is a new release.
VERSION_PATHS = (*RELEASE_PATHS, "requirements.lock")
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


def release_files(repo: Path = REPO_ROOT) -> list[str]:
    """Tracked and untracked-but-not-ignored files under RELEASE_PATHS, sorted."""
    out = _git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *RELEASE_PATHS)
    return sorted({name for name in out.split("\0") if name and (repo / name).is_file()})


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


def last_shipped_commit(repo: Path = REPO_ROOT) -> str:
    """The last commit that changed what ships. A commit of docs, roles or tests alone keeps the
    release version, so the next converge leaves the app servers running instead of restarting
    them all."""
    return _git(repo, "rev-list", "-1", "HEAD", "--", *VERSION_PATHS).strip() or "HEAD"


def build(repo: Path = REPO_ROOT) -> Artifact:
    """The release of the working tree of the git checkout `repo`."""
    tarball = pack(repo, release_files(repo))
    commit = _git(repo, "describe", "--always", "--abbrev=12", last_shipped_commit(repo)).strip()
    dirty = _git(repo, "status", "--porcelain", "--", *VERSION_PATHS).strip()
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
