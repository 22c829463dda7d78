"""Releases of the app: build → ship → switch → restart, as small reusable steps.

A release is the repo's tracked (and not ignored) files under RELEASE_PATHS, packed into a
deterministic tar.gz. Its version is the last commit that changed those paths (`git describe
--always`) when they are clean, else `<commit>-dirty-<content hash>`, so the same tree always
gives the same version and re-shipping it is a no-op.

On a host (ROOT = /opt/photostack):
    releases/<version>/          the unpacked files + `venv` → ../../venvs/<requirements hash>
    releases/<version>/.release  written last: a release dir without it is incomplete
    venvs/<hash>/                Debian's python3 + the locked deps (requirements.lock), shared by
                                 releases with the same pins; `.complete` written last
    current → releases/<version> what the services run (switched atomically with rename)

Each step is a pure builder of shell text (run by the converge engine as a Command, or by a
deploy over any connection):
    build_release()                     → Release (version, tarball, requirements)
    venv_script(release) / venv_ready(release)
    ship_script(release) / shipped(release)
    switch_script(version) / switched(version)
    prune_script(keep)
The services restart through their own Service stop/start (ops/maintenance.py `restart_script`).
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import shlex
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from infra.config import REPO_ROOT
from infra.lockfile import LOCK_FILE, closure

LOCK_NAME = LOCK_FILE.name

ROOT = "/opt/photostack"
RELEASES = f"{ROOT}/releases"
VENVS = f"{ROOT}/venvs"
CURRENT = f"{ROOT}/current"
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


@dataclass(frozen=True)
class Release:
    """One built release."""

    version: str
    tarball: bytes  # gzip'd tar of the release files (deterministic: same tree, same bytes)
    requirements: str  # pinned requirement lines for the venv

    @property
    def path(self) -> str:
        return f"{RELEASES}/{self.version}"

    @property
    def venv(self) -> str:
        """The venv this release runs with: one per distinct set of pins."""
        return f"{VENVS}/{hashlib.sha256(self.requirements.encode()).hexdigest()[:12]}"


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


@functools.cache
def build_release(repo: Path = REPO_ROOT) -> Release:
    """The release of the working tree (cached per process: one converge builds it once)."""
    files = release_files(repo)
    tarball = pack(repo, files)
    commit = _git(repo, "describe", "--always", "--abbrev=12", last_shipped_commit(repo)).strip()
    dirty = _git(repo, "status", "--porcelain", "--", *VERSION_PATHS).strip()
    version = f"{commit}-dirty-{hashlib.sha256(tarball).hexdigest()[:10]}" if dirty else commit
    return Release(version, tarball, requirements(repo))


def venv_ready(release: Release) -> str:
    """Exit 0 when the release's venv is fully built."""
    return f"[ -f {release.venv}/.complete ]"


def venv_script(release: Release) -> str:
    """Build the venv from scratch with Debian's python3 (by full path: a login PATH may find
    another one the service user cannot read); `.complete` marks success."""
    v = release.venv
    reqs = base64.b64encode(release.requirements.encode()).decode()
    return (f"rm -rf {v} && mkdir -p {VENVS} && /usr/bin/python3 -m venv {v} "
            f"&& printf %s {reqs} | base64 -d > {v}/requirements.txt "
            f"&& {v}/bin/pip install -q --disable-pip-version-check --require-hashes -r {v}/requirements.txt "
            f"&& touch {v}/.complete")


def shipped(release: Release) -> str:
    """Exit 0 when the release is unpacked on the host."""
    return f"[ -f {release.path}/.release ]"


def ship_script(release: Release) -> str:
    """Unpack the tarball into a temp dir beside the release dir, link its venv, mark it complete,
    then rename it into place (a half-shipped release never looks complete)."""
    tmp = f"{release.path}.tmp"
    payload = base64.b64encode(release.tarball).decode()
    return (f"rm -rf {tmp} && mkdir -p {tmp} && printf %s {payload} | base64 -d | tar -xzf - -C {tmp} "
            f"&& ln -sfn {release.venv} {tmp}/venv && echo {shlex.quote(release.version)} > {tmp}/.release "
            f"&& chmod 755 {tmp} && rm -rf {release.path} && mv {tmp} {release.path}")


def switched(version: str) -> str:
    """Exit 0 when `current` points at the version."""
    return f'[ "$(readlink {CURRENT})" = {RELEASES}/{shlex.quote(version)} ]'


def switch_script(version: str) -> str:
    """Point `current` at a shipped release atomically (a new link renamed over the old one)."""
    target = f"{RELEASES}/{shlex.quote(version)}"
    return (f"[ -f {target}/.release ] && ln -sfn {target} {CURRENT}.new && mv -Tf {CURRENT}.new {CURRENT}")


def prune_script(keep: int) -> str:
    """Remove all but the newest `keep` releases, never the current one (rollback targets stay)."""
    return (f"cd {RELEASES} && cur=$(basename \"$(readlink {CURRENT})\") && "
            f"ls -1t | grep -v -x -e \"$cur\" | tail -n +{keep} | xargs -r rm -rf")


def pruned(keep: int) -> str:
    """Exit 0 when at most `keep` releases are on the host."""
    return f"[ $(ls -1 {RELEASES} 2>/dev/null | wc -l) -le {keep} ]"
