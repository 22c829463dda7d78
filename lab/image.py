"""The lab's base image: Debian 12 (minbase + systemd, sshd, python3), built once with debootstrap and cached.

Every lab host boots from this one read-only tree through its own overlay (see `lab.hosts`). The
image carries no SSH host key and no machine id: each host makes its own at first boot (the
cloud-init stand-in in `lab/files/` is added to each host's own root, see `lab.hosts`). The image is rebuilt only when its recipe changes (the recipe's hash is
stamped into the finished tree; a half-built tree is never used).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# systemd as PID 1 (the roles' systemd paths run for real), sshd for ops, python3 for the converge
# engine's facts, iproute2 for the host's own network, ca-certificates for the lab CA.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "iproute2", "python3", "sudo",
            "ca-certificates")
STAMP = ".photostack-lab-image"


def cache_dir() -> Path:
    """Where lab images and host trees live (git-ignored, outside any checkout; may be overridden)."""
    return Path(os.environ.get("PHOTOSTACK_LAB_CACHE", "/var/cache/photostack-lab"))


def recipe_hash() -> str:
    """A hash of everything the image is made from: a change rebuilds it."""
    return hashlib.sha256("\n".join((SUITE, MIRROR, SECURITY_MIRROR, *PACKAGES)).encode()).hexdigest()[:16]


def image_path(root: Path | None = None) -> Path:
    """The finished image tree of the current recipe."""
    return (root or cache_dir()) / f"image-{recipe_hash()}"


def is_built(path: Path) -> bool:
    """Whether `path` is a complete image of the current recipe."""
    stamp = path / STAMP
    return stamp.is_file() and stamp.read_text().strip() == recipe_hash()


def _configure(tree: Path) -> None:
    """Turn a fresh debootstrap tree into a lab host image."""
    (tree / "etc/apt/sources.list").write_text(
        f"deb {MIRROR} {SUITE} main\ndeb {MIRROR} {SUITE}-updates main\n"
        f"deb {SECURITY_MIRROR} {SUITE}-security main\n")
    # debootstrap writes no localhost line; Postgres (and much else) resolves `localhost`.
    (tree / "etc/hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
    for key in (tree / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # each host makes its own at first boot
    (tree / "etc/machine-id").write_text("")  # systemd makes one per host at boot
    unit_dir = tree / "etc/systemd/system"
    # Units that have nothing to do in a container and slow every boot.
    for unit in ("systemd-timesyncd.service", "apt-daily.timer", "apt-daily-upgrade.timer"):
        (unit_dir / unit).unlink(missing_ok=True)
        (unit_dir / unit).symlink_to("/dev/null")


def build(root: Path | None = None) -> Path:
    """The image tree of the current recipe: built with debootstrap unless already cached."""
    path = image_path(root)
    if is_built(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
                    str(partial), MIRROR], check=True, stdout=subprocess.DEVNULL)
    # Bring the tree to the -updates and -security suites the host machine runs.
    _configure(partial)
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    no_services = partial / "usr/sbin/policy-rc.d"  # nothing starts inside the chroot
    no_services.write_text("#!/bin/sh\nexit 101\n")
    no_services.chmod(0o755)
    for argv in (["apt-get", "update", "-q"], ["apt-get", "dist-upgrade", "-y", "-q"], ["apt-get", "clean"]):
        subprocess.run(["chroot", str(partial), *argv], check=True, env=env, stdout=subprocess.DEVNULL)
    no_services.unlink()
    (partial / STAMP).write_text(recipe_hash() + "\n")
    shutil.rmtree(path, ignore_errors=True)
    partial.rename(path)
    return path
