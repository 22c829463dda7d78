"""The wheelhouse the release bundle carries: every locked dependency a host installs, as wheels.

Hosts install with `pip --no-index --find-links <wheelhouse> --require-hashes`: no PyPI on a host,
and every file checked against the lock's hashes. What a host installs is the project's run-time
closure (`lockfile.runtime_closure`, the bundle's host-requirements.txt): the ops venv installs all
of it, the app's release venv and munin's monitoring venv a subset of it.

One flat directory serves both images hosts boot, each with its own python3: AWS's Ubuntu 24.04
(infra/fleet.py, Python 3.12) and the lab's Debian 12 (lab/image.py, Python 3.11; the lab is the
AWS target with a Debian image, and the program has no setting that tells them apart). pip on a
host picks the wheels its interpreter can run; pure-Python wheels are there once.

Built once per lock (the directory is named by a hash of the requirements and HOST_PYTHONS) in a
cache outside any checkout, with pip itself (`pip download --only-binary=:all: --no-deps`, the
lock being complete), which checks each file against the lock's hashes. A locked package without
a wheel for a host's Python stops the build with one line naming it: a boot never finds out.
(`pip wheel` of an sdist would give a wheel whose hash the lock does not hold, which a host's
`--require-hashes` refuses; no host dependency needs it today.)
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packaging.requirements import Requirement
from packaging.tags import Tag, cpython_tags, compatible_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from infra import host_layout
from infra.lockfile import parse

# Where the wheelhouse sits in the release bundle (host_layout.WHEELHOUSE once unpacked on a host).
BUNDLE_DIR = PurePosixPath(host_layout.WHEELHOUSE).relative_to(host_layout.BUNDLE_DIR).as_posix()
MACHINE = "x86_64"  # the images infra/fleet.py and lab/image.py boot are amd64
OLDEST_GLIBC_MINOR = 5  # manylinux_2_5 (manylinux1): the oldest tag a wheel may carry


class WheelhouseError(Exception):
    """A wheelhouse cannot be built; the message is one line naming what is missing."""


@dataclass(frozen=True)
class HostPython:
    """The python3 of an image hosts boot."""

    image: str
    version: str
    """Its full version: markers such as `python_full_version < '3.11.3'` select by it."""
    glibc_minor: int
    """The image's glibc 2.x: the newest manylinux tag its wheels may carry."""

    @property
    def nodot(self) -> str:
        return "".join(self.version.split(".")[:2])

    def platforms(self) -> list[str]:
        """The platform tags its wheels may carry, newest first (pip expands none of the
        manylinux_2_x tags itself)."""
        found = [f"manylinux_2_{minor}_{MACHINE}" for minor in range(self.glibc_minor, OLDEST_GLIBC_MINOR - 1, -1)]
        return found + [f"manylinux2014_{MACHINE}", f"manylinux2010_{MACHINE}", f"manylinux1_{MACHINE}"]

    def tags(self) -> set[Tag]:
        """Every wheel tag this Python runs."""
        version = tuple(int(part) for part in self.version.split(".")[:2])
        platforms = self.platforms()
        return {*cpython_tags(version, platforms=platforms), *compatible_tags(version, f"cp{self.nodot}", platforms)}

    def environment(self) -> dict[str, str]:
        """Its environment-marker values (PEP 508)."""
        return {"implementation_name": "cpython", "implementation_version": self.version, "os_name": "posix",
                "platform_machine": MACHINE, "platform_python_implementation": "CPython", "platform_release": "",
                "platform_system": "Linux", "platform_version": "", "python_full_version": self.version,
                "python_version": ".".join(self.version.split(".")[:2]), "sys_platform": "linux", "extra": ""}


# Debian 12 ships Python 3.11.2 and glibc 2.36; Ubuntu 24.04 Python 3.12.3 and glibc 2.39.
HOST_PYTHONS = (HostPython("Debian 12", "3.11.2", 36), HostPython("Ubuntu 24.04", "3.12.3", 39))


def for_python(requirements: str, python: HostPython) -> str:
    """The entries of `requirements` (lock-file text) that `python` installs, one line each with
    their hashes and without markers (evaluated here for that Python, not for the one running)."""
    lines = []
    for entry in parse(requirements):
        first, *hashes = (line.strip().rstrip("\\").strip() for line in entry.text.splitlines())
        marker = Requirement(first).marker
        if marker is None or marker.evaluate(python.environment()):
            lines.append(" ".join([f"{entry.name}=={entry.version}", *hashes]))
    return "".join(f"{line}\n" for line in lines)


def cache_dir() -> Path:
    """Where built wheelhouses are kept: outside any checkout, so a fresh clone reuses them."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "photostack" / "wheelhouses"


def directory(requirements: str) -> Path:
    """The wheelhouse of `requirements`, built or not: named by what it is built from."""
    spec = "\n".join([requirements, *(repr(p) for p in HOST_PYTHONS), MACHINE])
    return cache_dir() / hashlib.sha256(spec.encode()).hexdigest()[:16]


def missing(requirements: str, wheels: Path, python: HostPython) -> list[str]:
    """`name==version` of each entry `python` installs that has no wheel it can run in `wheels`."""
    tags = python.tags()
    have: set[tuple[str, str]] = set()
    for path in wheels.glob("*.whl"):
        name, version, _build, wheel_tags = parse_wheel_filename(path.name)
        if wheel_tags & tags:
            have.add((name, str(version)))
    wanted = [line.split()[0].split("==") for line in for_python(requirements, python).splitlines()]
    return [f"{name}=={version}" for name, version in wanted if (canonicalize_name(name), version) not in have]


_NOT_FOUND = re.compile(r"No matching distribution found for (\S+)")
_NOT_MATCHING = re.compile(r"^\s+(\S+==\S+) from ", re.MULTILINE)  # under "DO NOT MATCH THE HASHES"


def download(requirements: str, python: HostPython, out: Path, sources: tuple[str, ...] = ()) -> None:
    """Download into `out` the wheel of every entry `python` installs, each checked against its
    hashes; `sources` are pip's index options (default: pip's own configuration)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listed:
        listed.write(for_python(requirements, python))
        listed.flush()
        argv = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                "--only-binary=:all:", "--require-hashes", "--implementation", "cp",
                "--python-version", python.nodot, *(f"--abi={abi}" for abi in (f"cp{python.nodot}", "abi3", "none")),
                *(f"--platform={platform}" for platform in python.platforms()), *sources,
                "-d", str(out), "-r", listed.name]
        result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        if found := _NOT_FOUND.search(result.stderr):
            what = f"no wheel of {found[1]}"
        elif tampered := _NOT_MATCHING.findall(result.stderr):
            what = f"{', '.join(tampered)}: the file does not match the lock's hashes"
        else:
            what = "pip download failed: " + _last_error(result.stderr)
        raise WheelhouseError(f"wheelhouse for {python.image} (Python {python.version}, {MACHINE}): {what}")


def _last_error(stderr: str) -> str:
    errors = [line.strip() for line in stderr.splitlines() if line.startswith("ERROR")]
    return errors[-1] if errors else (stderr.strip().splitlines() or ["no output"])[-1]


def built(requirements: str, sources: tuple[str, ...] = ()) -> Path:
    """The wheelhouse of `requirements` for every Python in HOST_PYTHONS, built unless cached
    (into a temp dir renamed into place: a half-built one is never used)."""
    path = directory(requirements)
    if path.is_dir():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{path.name}.", dir=path.parent))
    try:
        for python in HOST_PYTHONS:
            download(requirements, python, partial, sources)
            if absent := missing(requirements, partial, python):
                raise WheelhouseError(f"wheelhouse for {python.image} (Python {python.version}): "
                                      f"no wheel it can run of {', '.join(absent)}")
        partial.chmod(0o755)
        try:
            partial.rename(path)
        except OSError:
            if not path.is_dir():  # else another process built the same one meanwhile
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return path


