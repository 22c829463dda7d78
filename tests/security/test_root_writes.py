"""The engine runs as root: a link planted by a service account must never redirect its writes.

Each test plants a real link as the unprivileged `nobody` in a directory `nobody` owns (as the app
owns its media root), then runs the engine's own fact and change commands through bash, as a
converge would.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from roles.engine.resources import Directory, File

NOBODY = "nobody"


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A root-owned 0755 directory under /tmp that `nobody` can traverse."""
    root = Path(tempfile.mkdtemp(prefix="photostack-sec-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


def as_nobody(command: str) -> None:
    subprocess.run(["runuser", "-u", NOBODY, "--", "sh", "-c", command], check=True)


def service_owned_dir(path: Path) -> Path:
    path.mkdir()
    shutil.chown(path, NOBODY, "nogroup")
    return path


def victim(path: Path) -> Path:
    """A root-only directory holding a file, standing in for /usr/local/sbin."""
    path.mkdir(mode=0o755)
    (path / "tool").write_text("original\n")
    return path


def converge(resource: Directory | File) -> tuple[int, str]:
    """Read the fact, plan, and apply every change, exactly the commands a converge runs."""
    fact = subprocess.run(["bash", "-c", resource.fact_command()], capture_output=True, text=True).stdout
    output, code = [], 0
    for change in resource.changes(fact):
        done = subprocess.run(["bash", "-c", " && ".join(f"( {c} )" for c in change.commands)],
                              capture_output=True, text=True)
        output.append(done.stdout + done.stderr)
        code = code or done.returncode
    return code, "".join(output)


def owner_and_mode(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, stat.S_IMODE(st.st_mode)


def test_directory_refuses_a_link_planted_in_its_place(scratch: Path) -> None:
    home = service_owned_dir(scratch / "home")
    target = victim(scratch / "sbin")
    as_nobody(f"ln -s {target} {home}/media")

    code, output = converge(Directory(f"{home}/media", owner=NOBODY, group="nogroup", mode=0o750))

    assert code != 0
    assert "symbolic link" in output
    assert owner_and_mode(target) == (0, 0o755)


def test_file_refuses_a_link_planted_in_its_place(scratch: Path) -> None:
    home = service_owned_dir(scratch / "home")
    target = victim(scratch / "sbin")
    as_nobody(f"ln -s {target}/tool {home}/app.conf")

    code, output = converge(File(f"{home}/app.conf", "x=1\n", owner=NOBODY, group="nogroup", mode=0o640))

    assert code != 0
    assert "symbolic link" in output
    assert (target / "tool").read_text() == "original\n"
    assert owner_and_mode(target / "tool") == (0, 0o644)


def test_file_never_writes_through_a_link_planted_as_the_temp_file(scratch: Path) -> None:
    """The old writer used the fixed name `<file>.photostack-new`; a link there got the content,
    the chown and the chmod. Temp files are now created exclusively under random names."""
    home = service_owned_dir(scratch / "home")
    target = victim(scratch / "sbin")
    as_nobody(f"ln -s {target}/tool {home}/app.conf.photostack-new")

    code, output = converge(File(f"{home}/app.conf", "x=1\n", owner=NOBODY, group="nogroup", mode=0o640))

    assert code == 0, output
    assert (target / "tool").read_text() == "original\n"
    assert owner_and_mode(target / "tool") == (0, 0o644)
    assert (home / "app.conf").read_text() == "x=1\n"


def test_a_link_in_a_parent_directory_made_by_a_service_account_is_refused(scratch: Path) -> None:
    home = service_owned_dir(scratch / "home")
    target = victim(scratch / "sbin")
    as_nobody(f"ln -s {target} {home}/conf.d")

    code, output = converge(File(f"{home}/conf.d/tool", "#!/bin/sh\nid\n", mode=0o755))

    assert code != 0
    assert f"{home}/conf.d is a symbolic link" in output
    assert (target / "tool").read_text() == "original\n"


def test_links_only_root_could_make_are_followed(scratch: Path) -> None:
    """Debian's own links (`/var/run` → `/run`, `/lib` → `usr/lib`) sit in root-only directories."""
    (scratch / "run").mkdir()
    (scratch / "var").mkdir()
    os.symlink("../run", scratch / "var" / "run")

    code, output = converge(File(f"{scratch}/var/run/app.pid.conf", "1\n", mode=0o600))

    assert code == 0, output
    assert (scratch / "run" / "app.pid.conf").read_text() == "1\n"


def test_a_written_file_has_exactly_the_wanted_content_owner_and_mode_and_no_leftovers(scratch: Path) -> None:
    home = service_owned_dir(scratch / "home")
    secret_file = File(f"{home}/sub/app.env", "KEY='v'\n", owner="root", group="nogroup", mode=0o640,
                       sensitive=True)

    assert converge(secret_file) == (0, "")

    written = home / "sub" / "app.env"
    assert written.read_text() == "KEY='v'\n"
    assert (written.stat().st_uid, written.stat().st_gid) == (0, grp.getgrnam("nogroup").gr_gid)
    assert stat.S_IMODE(written.stat().st_mode) == 0o640
    assert sorted(p.name for p in written.parent.iterdir()) == ["app.env"]
    assert converge(secret_file) == (0, "")  # a second converge changes nothing


def test_a_directory_is_created_with_owner_and_mode_and_parents_root_owned(scratch: Path) -> None:
    code, output = converge(Directory(f"{scratch}/a/b", owner=NOBODY, group="nogroup", mode=0o2750))

    assert code == 0, output
    st = (scratch / "a" / "b").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (pwd.getpwnam(NOBODY).pw_uid, 0o2750)
    assert owner_and_mode(scratch / "a") == (0, 0o755)
