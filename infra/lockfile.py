"""The one lock file: every dependency of the project (hosts and dev), pinned with its hashes.

`requirements.lock` is generated from pyproject.toml by `make lock` (uv pip compile
--generate-hashes --universal) and read three ways: `make setup` installs all of it with
--require-hashes, the host bootstrap and the app's release venv install the subset they need
(`closure`), so an operator's machine, CI and every host run the same verified files.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from infra.config import REPO_ROOT, stacks_dir

LOCK_FILE = REPO_ROOT / "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


@dataclass(frozen=True)
class Locked:
    """One entry of the lock file (a name may have several, under different environment markers)."""

    name: str
    version: str
    text: str
    """The entry as written: `name==version ; markers` and its `--hash` lines, without comments."""
    via: frozenset[str]
    """Names of the locked packages that require it (`photostack` for the project itself)."""


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name.split("[", 1)[0]).lower()


def parse(text: str) -> list[Locked]:
    """The entries of a lock file written by `uv pip compile` (or pip-compile)."""
    entries: list[Locked] = []
    block: list[str] = []
    via: set[str] = set()

    def flush() -> None:
        if block:
            match = _PIN.match(block[0])
            if match is None:
                raise ValueError(f"{LOCK_FILE.name}: not a pinned requirement: {block[0]!r}")
            entries.append(Locked(normalize(match[1]), match[3], "\n".join(block) + "\n", frozenset(via)))

    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not line.startswith((" ", "#")):
            flush()
            block, via = [line], set()
        elif stripped.startswith("--hash"):
            block.append(line)
        elif stripped.startswith("#") and block:
            # "# via x" or "# via" followed by "#   x" lines
            words = stripped.lstrip("#").split()
            if words and words[0] == "via":
                words = words[1:]
            if words and not words[0].startswith("("):
                via.add(normalize(words[0]))
    flush()
    return entries


def lock_file() -> Path:
    """The checkout's lock file; on a host, which installed the project from the release bundle
    (no checkout beside the packages), the bundle's, found where its stack config is
    (`$PHOTOSTACK_STACKS_DIR`, the unpacked bundle)."""
    if LOCK_FILE.is_file():
        return LOCK_FILE
    return stacks_dir() / LOCK_FILE.name


def entries(path: Path | None = None) -> tuple[Locked, ...]:
    """The entries of the project's lock file (or of `path`), as the file reads now."""
    return _parsed((path or lock_file()).read_text())


@cache
def _parsed(text: str) -> tuple[Locked, ...]:
    # A plan renders the bootstrap once per host: parse each distinct text once.
    return tuple(parse(text))


def locked_version(name: str, path: Path | None = None) -> str:
    """The version `name` is locked at (the first entry when markers split it)."""
    for entry in entries(path or lock_file()):
        if entry.name == normalize(name):
            return entry.version
    raise KeyError(f"{name} is not in {LOCK_FILE.name}; run `make lock`")


def closure(names: tuple[str, ...] | list[str], path: Path | None = None) -> str:
    """Requirement text with hashes for `names` and everything they need, in lock-file order:
    what `pip install --require-hashes -r` takes to install just that subset."""
    locked = entries(path or lock_file())
    wanted = {normalize(n) for n in names}
    missing = wanted - {e.name for e in locked}
    if missing:
        raise KeyError(f"{', '.join(sorted(missing))} not in {LOCK_FILE.name}; run `make lock`")
    changed = True
    while changed:  # a package is needed when something needed requires it
        changed = False
        for entry in locked:
            if entry.name not in wanted and entry.via & wanted:
                wanted.add(entry.name)
                changed = True
    return "".join(e.text for e in locked if e.name in wanted)


def runtime_closure(root: Path = REPO_ROOT) -> str:
    """Requirement text with hashes for what the installed project needs at run time: the
    closure of pyproject.toml's `[project] dependencies` (no test or dev extras) in `root`'s lock."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0] for requirement in project["dependencies"]]
    return closure(names, root / LOCK_FILE.name)
