"""The engine's Filesystem resource on a real block device (root; a loop device made here): the
first converge formats and mounts it, the second changes nothing, data is never formatted over, and
a check (`--check --diff`) shows what it would do without doing it.

The mount point and the fstab file live in a root-only scratch directory under /mnt (a mount point's
parents must be root's alone), never in this machine's /etc/fstab.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from roles.engine.resources import Change, Filesystem


@dataclass(frozen=True)
class Scratch:
    root: Path
    device: str
    fstab: Path

    def resource(self, **overrides: object) -> Filesystem:
        args = {"device": self.device, "path": str(self.root / "data"), "owner": "nobody", "group": "nogroup",
                "mode": 0o750, "fstab": str(self.fstab), "wait_s": 2, **overrides}
        return Filesystem(**args)  # type: ignore[arg-type]


def run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def mounted_at(path: Path | str) -> str:
    """What is mounted at `path` (device and type), or "" for nothing."""
    return subprocess.run(["findmnt", "-rn", "-M", str(path), "-o", "SOURCE,FSTYPE"], capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def scratch() -> Iterator[Scratch]:
    """A 32 MiB sparse file as a loop device, a root-only directory for the mount point and an
    fstab with an entry of its own; all of it undone after."""
    root = Path(tempfile.mkdtemp(prefix="photostack-fs-", dir="/mnt"))
    root.chmod(0o755)
    image = root / "volume.img"
    with image.open("wb") as out:
        out.truncate(32 << 20)
    device = run("losetup", "--find", "--show", str(image))
    fstab = root / "fstab"
    fstab.write_text("# a comment\nproc /proc proc defaults 0 0\n")
    try:
        yield Scratch(root, device, fstab)
    finally:
        subprocess.run(["umount", "-R", str(root / "data")], capture_output=True)
        subprocess.run(["losetup", "-d", device], check=True)
        shutil.rmtree(root)


def fact(resource: Filesystem) -> str:
    return subprocess.run(["bash", "-c", resource.fact_command()], capture_output=True, text=True).stdout


def converge(resource: Filesystem) -> tuple[list[Change], list[subprocess.CompletedProcess[str]]]:
    """Read the fact, plan, and apply each change's commands, as a converge does."""
    changes = resource.changes(fact(resource))
    done = [subprocess.run(["bash", "-c", " && ".join(f"( {c} )" for c in change.commands)],
                           capture_output=True, text=True) for change in changes]
    return changes, done


def uuid_of(device: str) -> str:
    return run("blkid", "-p", "-o", "value", "-s", "UUID", device)


def test_first_converge_formats_and_mounts_by_uuid_the_second_changes_nothing(scratch: Scratch) -> None:
    resource = scratch.resource()
    changes, done = converge(resource)
    assert [c.summary for c in changes] == [f"{scratch.device} carries no filesystem: would format it ext4 and mount it"]
    assert done[0].returncode == 0, done[0].stderr
    uuid = uuid_of(scratch.device)
    assert mounted_at(resource.path) == f"{scratch.device} ext4"
    assert scratch.fstab.read_text() == (f"# a comment\nproc /proc proc defaults 0 0\n"
                                         f"UUID={uuid} {resource.path} ext4 defaults,nofail 0 2\n")
    assert run("stat", "-c", "%U %G %a", resource.path) == "nobody nogroup 750"  # the filesystem's root
    assert converge(resource)[0] == []


def test_a_filesystem_with_data_is_mounted_not_formatted(scratch: Scratch) -> None:
    run("mkfs.ext4", "-q", scratch.device)
    uuid = uuid_of(scratch.device)
    staging = scratch.root / "staging"
    staging.mkdir()
    run("mount", scratch.device, str(staging))
    (staging / "PG_VERSION").write_text("15\n")
    run("umount", str(staging))

    resource = scratch.resource()
    changes, done = converge(resource)
    assert [c.summary for c in changes] == [f"{scratch.fstab} entry, not mounted"]
    assert done[0].returncode == 0, done[0].stderr
    assert uuid_of(scratch.device) == uuid  # the same filesystem: not formatted again
    assert (Path(resource.path) / "PG_VERSION").read_text() == "15\n"
    assert converge(resource)[0] == []


def test_a_check_shows_the_format_and_the_fstab_line_and_changes_nothing(scratch: Scratch) -> None:
    resource = scratch.resource()
    (change,) = resource.changes(fact(resource))  # what `--check --diff` prints; nothing is run
    assert "would format it ext4" in change.summary
    assert f"+UUID=<UUID made by the format> {resource.path} ext4 defaults,nofail 0 2" in (change.diff or "")
    assert subprocess.run(["blkid", "-p", scratch.device], capture_output=True).returncode == 2  # still blank
    assert "UUID=" not in scratch.fstab.read_text()
    assert not Path(resource.path).exists()


def test_refuses_another_filesystem_and_files_hidden_under_the_mount(scratch: Scratch) -> None:
    run("mkfs.ext2", "-q", scratch.device)
    changes, done = converge(scratch.resource())
    assert changes[0].summary == f"{scratch.device} carries ext2, not ext4: will refuse it"
    assert done[0].returncode != 0 and "carries ext2, not ext4" in done[0].stderr
    assert run("blkid", "-p", "-o", "value", "-s", "TYPE", scratch.device) == "ext2"

    run("wipefs", "-q", "-a", scratch.device)
    data = scratch.root / "data"
    data.mkdir()
    (data / "15").mkdir()  # a cluster on the disk below, from before the volume
    changes, done = converge(scratch.resource())
    assert done[0].returncode != 0 and "holds files on the disk below (15)" in done[0].stderr
    assert not mounted_at(data)
    assert converge(scratch.resource())[0]  # still to do, once the files are moved


def test_waits_a_bounded_time_for_a_device_still_attaching(scratch: Scratch) -> None:
    resource = scratch.resource(device="/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0photostacktest")
    changes, done = converge(resource)
    assert "absent (still attaching?)" in changes[0].summary
    assert done[0].returncode != 0 and "no such block device after 2 s" in done[0].stderr


def test_a_mount_point_under_a_directory_a_service_account_can_write_is_refused(scratch: Scratch) -> None:
    shared = scratch.root / "shared"
    shared.mkdir()
    shutil.chown(shared, "nobody", "nogroup")  # nobody could swap `data` for a link to /etc
    changes, done = converge(scratch.resource(path=str(shared / "data")))
    assert done[0].returncode != 0 and f"{shared} is writable by others than root" in done[0].stderr
    assert not mounted_at(shared / "data")
    assert subprocess.run(["blkid", "-p", scratch.device], capture_output=True).returncode == 2  # nothing half-done
