"""Root writes that never follow a link a service account planted (run on the host, stdlib only).

The engine runs as root and writes into directories that service accounts own (an app's media
root, a database's data directory). Writing by path there (`cat > f`, `chown f`, `install -d f`)
follows whatever link the account put in its place, e.g. `/srv/photostack/media` →
`/usr/local/sbin`, and hands the account a root-owned path. So this program:

- walks the path one component at a time from `/`, with file descriptors (`openat` semantics),
  following a symbolic link only where root alone could have made it (a root-owned link in a
  root-owned directory that no one else can write, e.g. Debian's `/var/run` → `/run`);
- refuses when the final component is a link, whoever made it;
- writes a file into a temp file it creates exclusively (random name, `O_EXCL | O_NOFOLLOW`,
  mode 0600), sets owner and mode on the open descriptor, then renames it over the target;
- creates a directory, then sets owner and mode on the open descriptor;
- checks a mount point (made if missing): root mounts a device there by path, so no directory
  above it may be writable by anyone but root (who could move it, or a link, into its place).

Usage (the engine sends this file's source as `python3 -c`; content comes on stdin):
    write PATH OWNER GROUP MODE_OCTAL < content
    directory PATH OWNER GROUP MODE_OCTAL
    mountpoint PATH OWNER GROUP MODE_OCTAL   (owner, group and mode if it is made)
A refusal prints one line naming the path and exits 3.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import stat
import sys

_MAX_LINKS = 40  # as the kernel's own limit on links followed in one lookup
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(Exception):
    """The path cannot be written safely."""


def _root_only(dir_fd: int) -> bool:
    st = os.fstat(dir_fd)
    return st.st_uid == 0 and not st.st_mode & 0o022


def open_parent(path: str, create: bool = False, root_only: bool = False) -> tuple[int, str]:
    """(descriptor of the directory holding the last component, that component's name).

    With `create`, missing parent directories are made (root:root 0755, as `install -d` does);
    with `root_only`, every directory walked must be root's alone."""
    if not path.startswith("/"):
        raise Refused(f"{path}: not an absolute path")
    *parents, name = [p for p in path.split("/") if p not in ("", ".")] or ["."]
    if name in (".", ".."):
        raise Refused(f"{path}: names no file")
    fd = os.open("/", _DIR_FLAGS)
    walked, links = "", 0
    try:
        if root_only and not _root_only(fd):
            raise Refused("/ is writable by others than root")
        while parents:
            part = parents.pop(0)
            created = False
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    raise Refused(f"{walked}/{part}: missing") from None
                os.mkdir(part, 0o700, dir_fd=fd)
                st, created = os.stat(part, dir_fd=fd, follow_symlinks=False), True
            if stat.S_ISLNK(st.st_mode):
                if st.st_uid != 0 or not _root_only(fd):
                    raise Refused(f"{walked}/{part} is a symbolic link a non-root user could have made")
                links += 1
                if links > _MAX_LINKS:
                    raise Refused(f"{path}: too many symbolic links")
                target = os.readlink(part, dir_fd=fd)
                parents = [p for p in target.split("/") if p not in ("", ".")] + parents
                if target.startswith("/"):
                    os.close(fd)
                    fd, walked = os.open("/", _DIR_FLAGS), ""
                continue
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            if created:
                os.fchmod(next_fd, 0o755)  # whatever the umask
            os.close(fd)
            fd, walked = next_fd, f"{walked}/{part}"
            if root_only and not _root_only(fd):
                raise Refused(f"{walked} is writable by others than root")
    except BaseException:
        os.close(fd)
        raise
    return fd, name


def _ids(owner: str, group: str) -> tuple[int, int]:
    return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid


def _refuse_link(dir_fd: int, name: str, path: str) -> os.stat_result | None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise Refused(f"{path} is a symbolic link: refusing to write through it")
    return st


def write_file(path: str, content: bytes, owner: str, group: str, mode: int) -> None:
    """Replace `path` with `content` (atomically), owned by owner:group with `mode`."""
    uid, gid = _ids(owner, group)
    dir_fd, name = open_parent(path, create=True)
    try:
        st = _refuse_link(dir_fd, name, path)
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise Refused(f"{path} exists and is not a regular file")
        temp = f".{name}.photostack-{secrets.token_hex(6)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb", closefd=False) as out:
                out.write(content)
                out.flush()
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
                os.fsync(fd)
            os.close(fd)
            os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            os.unlink(temp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)


def make_directory(path: str, owner: str, group: str, mode: int) -> None:
    """`path` as a directory owned by owner:group with `mode` (parents made root:root 0755)."""
    uid, gid = _ids(owner, group)
    dir_fd, name = open_parent(path, create=True)
    try:
        if _refuse_link(dir_fd, name, path) is None:
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


def check_mountpoint(path: str, owner: str, group: str, mode: int) -> None:
    """`path` as a directory to mount on, under directories only root may change (so what root
    mounts by path lands there); made owner:group with `mode` if missing. The mount point itself
    may belong to an account (a service's home): it cannot be swapped without writing above it."""
    dir_fd, name = open_parent(path, create=True, root_only=True)
    try:
        st = _refuse_link(dir_fd, name, path)
        if st is None:
            make_directory(path, owner, group, mode)
        elif not stat.S_ISDIR(st.st_mode):
            raise Refused(f"{path} exists and is not a directory")
    finally:
        os.close(dir_fd)


def main(argv: list[str]) -> int:
    """Entry point of `python3 -c <this source> write|directory|mountpoint PATH OWNER GROUP MODE`."""
    verb, path, owner, group, mode = argv
    try:
        if verb == "write":
            write_file(path, sys.stdin.buffer.read(), owner, group, int(mode, 8))
        elif verb == "directory":
            make_directory(path, owner, group, int(mode, 8))
        elif verb == "mountpoint":
            check_mountpoint(path, owner, group, int(mode, 8))
        else:
            raise Refused(f"unknown verb {verb}")
    except (Refused, OSError, KeyError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
