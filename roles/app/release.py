"""Releases of the app: build → ship → switch → restart, as small reusable steps.

A release is built once per version from the git checkout, or read from the built artifact a
host's release bundle carries (infra/release_artifact.py: what ships, its version, its pins).

On a host (ROOT = /opt/photostack):
    releases/<version>/          the unpacked files + `venv` → ../../venvs/<requirements hash>
    releases/<version>/.release  written last: a release dir without it is incomplete
    venvs/<hash>/                Debian's python3 + the locked deps (requirements.lock), shared by
                                 releases with the same pins; `.complete` written last
    current → releases/<version> what the services run (switched atomically with rename)

Each step is a pure builder of shell text (run by the converge engine as a Command, or by a
deploy over any connection):
    build_release() / current_release() → Release (version, tarball, requirements)
    venv_script(release) / venv_ready(release)
    ship_script(release) / shipped(release)
    switch_script(version) / switched(version)
    prune_script(keep)
The services restart through their own `Service.restart` (roles/engine/resources.py).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import os
import shlex
import threading
from dataclasses import dataclass
from pathlib import Path

from infra import release_artifact
from infra.config import REPO_ROOT
from infra.host_layout import pip_sources

ROOT = "/opt/photostack"
RELEASES = f"{ROOT}/releases"
VENVS = f"{ROOT}/venvs"
CURRENT = f"{ROOT}/current"
# A host installed from the release bundle (no checkout) names the bundle's built artifact here.
ARTIFACT_ENV = "PHOTOSTACK_RELEASE_ARTIFACT"


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


_BUILDING = threading.Lock()


def build_release(repo: Path = REPO_ROOT) -> Release:
    """The release of the working tree of the checkout `repo`, built once per process however
    many hosts' threads ask at once (a converge or `ops status` renders hosts in parallel; CPython
    3.11's `ast.parse`, which the build uses, is not safe in concurrent threads either)."""
    with _BUILDING:
        return _built(repo)


def release_of(repo: Path) -> Release:
    """The release of the checkout `repo`'s working tree, built now (not cached: a deploy of
    another ref builds its own tree)."""
    return Release(**dataclasses.asdict(release_artifact.build(repo)))


_built = functools.cache(release_of)


def current_release() -> Release:
    """The release this machine converges to: the built artifact `$PHOTOSTACK_RELEASE_ARTIFACT`
    names (a host has no checkout to build from), else the working tree's."""
    artifact = os.environ.get(ARTIFACT_ENV)
    if not artifact:
        return build_release()
    return _read_release(Path(artifact))


@functools.cache
def _read_release(directory: Path) -> Release:
    return Release(**dataclasses.asdict(release_artifact.read(directory)))


def venv_ready(release: Release) -> str:
    """Exit 0 when the release's venv is fully built."""
    return f"[ -f {release.venv}/.complete ]"


def venv_script(release: Release) -> str:
    """Build the venv from scratch with Debian's python3 (by full path: a login PATH may find
    another one the service user cannot read), from the host's wheelhouse where it has one;
    `.complete` marks success."""
    v = release.venv
    reqs = base64.b64encode(release.requirements.encode()).decode()
    return (f"rm -rf {v} && mkdir -p {VENVS} && /usr/bin/python3 -m venv {v} "
            f"&& printf %s {reqs} | base64 -d > {v}/requirements.txt "
            f"&& {v}/bin/pip install -q --disable-pip-version-check {pip_sources()} --require-hashes -r {v}/requirements.txt "
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


def pruned(keep: int, shipping: Release) -> str:
    """Exit 0 when at most `keep` releases are on the host, counting `shipping` if it is not there
    yet: a converge reads every check before it ships, and a check that did not count the release
    it ships left the prune to the next converge (which then had a change to make)."""
    return (f"n=$(ls -1 {RELEASES} 2>/dev/null | wc -l); [ -f {shipping.path}/.release ] || n=$((n + 1)); "
            f"[ \"$n\" -le {keep} ]")
