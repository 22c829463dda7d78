"""Desired state: the resource types a role declares.

Each type is a frozen value. It knows three things, kept apart:
  - `fact_command()`: the shell that reads what is there (run with every other fact of the host
    in one SSH round trip);
    (a type may also set `fact_prelude`: shell run once at the top of that script, shared by
    every resource of the type, e.g. one listing of the dpkg database for all package checks);
  - `changes(fact)`: given that output, what differs (nothing when the host is already right);
  - the commands of each change are built here too, but run elsewhere (roles/engine/executor.py).
"""

from __future__ import annotations

import base64
import difflib
import shlex
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class Change:
    """One difference between the host and the desired state, with the commands that close it."""

    resource: str  # e.g. "file /etc/nginx/nginx.conf"
    summary: str  # e.g. "content differs"
    commands: tuple[str, ...]
    notify: tuple[str, ...] = ()
    diff: str | None = None  # unified diff, for --diff


def _q(value: str) -> str:
    return shlex.quote(value)


@cache
def _safe_paths_program() -> str:
    return (Path(__file__).parent / "safe_paths.py").read_text()


def safe_paths_command(verb: str, path: str, owner: str, group: str, mode: int) -> str:
    """`roles/engine/safe_paths.py` run on the host: a root write that follows no planted link.
    Isolated mode (`-I`): no module from the working directory or PYTHON* variables."""
    return (f"python3 -I -c {_q(_safe_paths_program())} {verb} {_q(path)} {_q(owner)} {_q(group)} "
            f"{mode:o}")


_DPKG_LIST = "photostack_dpkg_list"


@dataclass(frozen=True)
class Packages:
    """Debian packages that must be installed."""

    names: tuple[str, ...]

    @property
    def key(self) -> str:
        return "packages " + " ".join(self.names)

    # One dpkg-query for every package check of the host (each would cost ~15 ms on its own).
    fact_prelude = f"{_DPKG_LIST}=$(dpkg-query -W -f='${{Package}} ${{db:Status-Abbrev}}\\n' 2>/dev/null)"

    def fact_command(self) -> str:
        wanted = " ".join(self.names)
        return (f"printf '%s\\n' \"${_DPKG_LIST}\" | awk -v want={_q(wanted)} "
                "'BEGIN { n = split(want, w, \" \"); for (i = 1; i <= n; i++) k[w[i]] = 1 } $1 in k'")

    def changes(self, fact: str) -> list[Change]:
        installed = {
            line.split()[0].split(":")[0]
            for line in fact.splitlines()
            if len(line.split()) > 1 and line.split()[1].startswith("ii")
        }
        missing = [n for n in self.names if n not in installed]
        if not missing:
            return []
        # policy-rc.d may forbid auto-start on install; services are started by their Service resource.
        install = (
            "export DEBIAN_FRONTEND=noninteractive; "
            "apt-get install -y -q -o Dpkg::Options::=--force-confold "
            + " ".join(_q(n) for n in missing)
            + " || { apt-get update -q && apt-get install -y -q -o Dpkg::Options::=--force-confold "
            + " ".join(_q(n) for n in missing)
            + "; }"
        )
        return [Change(f"packages {' '.join(missing)}", "not installed", (install,))]


@dataclass(frozen=True)
class SystemUser:
    """A system account (no login shell unless given)."""

    name: str
    home: str
    shell: str = "/usr/sbin/nologin"

    @property
    def key(self) -> str:
        return f"user {self.name}"

    def fact_command(self) -> str:
        return f"getent passwd {_q(self.name)} || true"

    def changes(self, fact: str) -> list[Change]:
        fields = fact.strip().split(":")
        if len(fields) < 7:
            cmd = f"useradd --system --home-dir {_q(self.home)} --create-home --shell {_q(self.shell)} {_q(self.name)}"
            return [Change(self.key, "missing", (cmd,))]
        if fields[5] != self.home or fields[6] != self.shell:
            cmd = f"usermod --home {_q(self.home)} --shell {_q(self.shell)} {_q(self.name)}"
            return [Change(self.key, f"home/shell is {fields[5]} {fields[6]}", (cmd,))]
        return []


@dataclass(frozen=True)
class Directory:
    """A directory with owner, group and mode."""

    path: str
    owner: str = "root"
    group: str = "root"
    mode: int = 0o755

    @property
    def key(self) -> str:
        return f"directory {self.path}"

    def fact_command(self) -> str:
        # stat without -L: a link shows as "symbolic link", never as what it points to.
        return f"stat -c '%F %U %G %a' {_q(self.path)} 2>/dev/null || echo missing"

    def changes(self, fact: str) -> list[Change]:
        wanted = f"directory {self.owner} {self.group} {self.mode:o}"
        if fact.strip() == wanted:
            return []
        cmd = safe_paths_command("directory", self.path, self.owner, self.group, self.mode)
        return [Change(self.key, "missing" if fact.strip() == "missing" else f"is {fact.strip()}", (cmd,))]


@dataclass(frozen=True)
class File:
    """A file with exact content (usually rendered from a template), owner, group and mode."""

    path: str
    content: str
    owner: str = "root"
    group: str = "root"
    mode: int = 0o644
    notify: tuple[str, ...] = ()
    sensitive: bool = False  # holds secrets: never shown in diffs or logs

    @property
    def key(self) -> str:
        return f"file {self.path}"

    def fact_command(self) -> str:
        p = _q(self.path)
        # A link is reported as such (and its target never read): writing refuses to follow it.
        return (f"if [ -L {p} ]; then echo symlink; elif [ -f {p} ]; then stat -c '%U %G %a' {p}; "
                f"base64 -w0 {p}; echo; else echo missing; fi")

    def changes(self, fact: str) -> list[Change]:
        lines = fact.split("\n", 1)
        wanted_meta = f"{self.owner} {self.group} {self.mode:o}"
        if lines[0].strip() == "symlink":
            return [Change(self.key, "is a symbolic link", (self.write_command(),), self.notify)]
        if lines[0].strip() == "missing":
            current, meta = None, None
        else:
            meta = lines[0].strip()
            current = base64.b64decode(lines[1].strip() if len(lines) > 1 else "").decode("utf-8", "replace")
        if current == self.content and meta == wanted_meta:
            return []
        if current is None:
            summary = "missing"
        elif current != self.content:
            summary = "content differs"
        else:
            summary = f"owner/mode is {meta}"
        return [Change(self.key, summary, (self.write_command(),), self.notify, self._diff(current))]

    def write_command(self) -> str:
        """Write atomically (an exclusive temp file beside the target, renamed over it) without
        following links. The content goes on stdin (printf is a shell builtin: not in `ps`)."""
        payload = base64.b64encode(self.content.encode()).decode()
        return (f"printf %s {payload} | base64 -d | "
                + safe_paths_command("write", self.path, self.owner, self.group, self.mode))

    def _diff(self, current: str | None) -> str:
        if self.sensitive:
            return f"--- {self.path}\n+++ {self.path}\n(content hidden: file holds secrets)\n"
        if current == self.content:
            return ""
        return "".join(
            difflib.unified_diff(
                (current or "").splitlines(keepends=True),
                self.content.splitlines(keepends=True),
                fromfile=self.path if current is not None else "/dev/null",
                tofile=self.path,
            )
        )


@dataclass(frozen=True)
class Absent:
    """A path that must not exist (e.g. a package's default site)."""

    path: str
    notify: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"absent {self.path}"

    def fact_command(self) -> str:
        return f"[ -e {_q(self.path)} ] || [ -L {_q(self.path)} ] && echo present || echo absent"

    def changes(self, fact: str) -> list[Change]:
        if fact.strip() != "present":
            return []
        return [Change(self.key, "present", (f"rm -rf {_q(self.path)}",), self.notify)]


FSTAB = "/etc/fstab"


@dataclass(frozen=True)
class Filesystem:
    """A block device's filesystem mounted at `path`, by UUID in /etc/fstab (AWS's documented way
    to use a new volume): formatted only if the device carries no filesystem and no partition table
    (data is never formatted over), mounted only over an empty directory (files on the disk below
    are never hidden), its root then given owner, group and mode.

    The device may appear late (a volume still attaching): applying waits up to `wait_s` for it.
    A device with another filesystem or a partition table, or a mount point holding files or
    another device, fails the change with one line; the mount point's parents must be root's alone
    (roles/engine/safe_paths.py `mountpoint`), so no service account can move it under the mount."""

    device: str
    path: str
    owner: str = "root"
    group: str = "root"
    mode: int = 0o755
    fstype: str = "ext4"
    options: str = "defaults,nofail"  # nofail: a missing volume never stops the host's boot
    wait_s: int = 300
    fstab: str = FSTAB

    @property
    def key(self) -> str:
        return f"filesystem {self.path}"

    def fact_command(self) -> str:
        dev, path = _q(self.device), _q(self.path)
        # blkid -p probes the device itself (no cache); device numbers compare what is mounted with it.
        return (f"if [ -b {dev} ]; then blkid -p -o export -s TYPE -s UUID -s PTTYPE {dev}; "
                f"echo \"devnum=$(printf '%d:%d' 0x$(stat -L -c %t {dev}) 0x$(stat -L -c %T {dev}))\"; fi; "
                f"echo \"mounted=$(findmnt -rn -M {path} -o MAJ:MIN | tail -n 1)\"; "
                f"echo \"fstab=$({self._fstab_entry()})\"; "
                f"echo \"root=$(stat -c '%U %G %a' {path})\"")

    def _fstab_entry(self) -> str:
        return (f"awk -v p={_q(self.path)} '$1 !~ /^#/ && $2 == p {{ print $1, $2, $3, $4, $5, $6 }}' "
                f"{_q(self.fstab)} | tail -n 1")

    def fstab_line(self, uuid: str) -> str:
        """The /etc/fstab entry of the filesystem `uuid` (fsck after the root filesystem: pass 2)."""
        return f"UUID={uuid} {self.path} {self.fstype} {self.options} 0 2"

    def changes(self, fact: str) -> list[Change]:
        seen = dict(line.split("=", 1) for line in fact.splitlines() if "=" in line)
        uuid = seen.get("UUID", "")
        if "devnum" not in seen:
            summary = f"{self.device} absent (still attaching?): would wait, then format if blank and mount"
        elif seen.get("PTTYPE"):
            summary = f"{self.device} carries a {seen['PTTYPE']} partition table: will refuse it"
        elif not seen.get("TYPE"):
            summary = f"{self.device} carries no filesystem: would format it {self.fstype} and mount it"
        elif seen["TYPE"] != self.fstype:
            summary = f"{self.device} carries {seen['TYPE']}, not {self.fstype}: will refuse it"
        else:
            wrong = []
            if seen.get("fstab") != self.fstab_line(uuid):
                wrong.append(f"{self.fstab} entry")
            if not seen.get("mounted"):
                wrong.append("not mounted")
            elif seen["mounted"] != seen["devnum"]:
                wrong.append(f"device {seen['mounted']} mounted there instead: will refuse it")
            elif seen.get("root") != f"{self.owner} {self.group} {self.mode:o}":
                wrong.append(f"its root is {seen.get('root')}")
            if not wrong:
                return []
            summary = ", ".join(wrong)
        wanted = self.fstab_line(uuid or "<UUID made by the format>")
        current = seen.get("fstab", "")
        diff = "".join(difflib.unified_diff([current + "\n"] if current else [], [wanted + "\n"], self.fstab, self.fstab))
        return [Change(self.key, summary, (self.apply_command(),), diff=diff)]

    def apply_command(self) -> str:
        """Every check first, then format, fstab entry, mount and root's owner, each checked again
        on the host as it runs (the facts may be old): a refusal leaves the host as it was."""
        dev, path, fstype = _q(self.device), _q(self.path), _q(self.fstype)
        absent = f"{self.device}: no such block device after {self.wait_s} s (volume not attached?)"
        return "\n".join([
            'refuse() { echo "$1" >&2; exit 1; }',
            f'probe() {{ blkid -p -o value -s "$1" {dev}; }}',
            "waited=0",
            f"while [ ! -b {dev} ]; do",
            f"  [ $waited -lt {self.wait_s} ] || refuse {_q(absent)}",
            "  sleep 1; waited=$((waited + 1))",
            "done",
            'table=$(probe PTTYPE); type=$(probe TYPE)',
            f'[ -z "$table" ] || refuse "{self.device} carries a $table partition table: not formatting or mounting it"',
            f'[ -z "$type" ] || [ "$type" = {fstype} ] || '
            f'refuse "{self.device} carries $type, not {self.fstype}: not formatting or mounting it"',
            f"here=$(printf '%d:%d' 0x$(stat -L -c %t {dev}) 0x$(stat -L -c %T {dev}))",
            f"mounted=$(findmnt -rn -M {path} -o MAJ:MIN | tail -n 1)",
            'if [ -z "$mounted" ]; then',
            f"  {safe_paths_command('mountpoint', self.path, 'root', 'root', 0o755)} || exit 1",
            f'  [ -z "$(ls -A {path})" ] || refuse "{self.path} holds files on the disk below '
            f'($(ls -A {path} | head -n 3 | xargs)): move them onto the volume first; not mounting over them"',
            f'elif [ "$mounted" != "$here" ]; then refuse "{self.path} is a mount of device $mounted, not {self.device}"; fi',
            f'if [ -z "$type" ]; then mkfs -t {fstype} -q {dev} || exit 1; fi',
            f'line=$(printf %s {_q(self.fstab_line("@UUID@"))} | sed "s/@UUID@/$(probe UUID)/")',
            f'if [ "$({self._fstab_entry()})" != "$line" ]; then',
            f"  {{ awk -v p={path} '$1 ~ /^#/ || $2 != p' {_q(self.fstab)}; echo \"$line\"; }} | "
            + safe_paths_command("write", self.fstab, "root", "root", 0o644) + " || exit 1",
            "  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi",
            "fi",
            f'[ -n "$mounted" ] || mount -t {fstype} -o {_q(self.options)} {dev} {path} || exit 1',
            safe_paths_command("directory", self.path, self.owner, self.group, self.mode),
        ])


@dataclass(frozen=True)
class Service:
    """A daemon that must be running (or stopped), driven by commands that work with or without systemd."""

    name: str
    start: str
    status: str
    stop: str
    running: bool = True
    restart_command: str = ""  # empty: stop, then start

    @classmethod
    def init_script(cls, name: str, running: bool = True, unit_conditions: bool = False) -> Service:
        """A Debian package's service, through `service` (init script, or systemd when it is PID 1).

        With `unit_conditions`, a systemd unit that its own conditions ruled out on this host when
        systemd last tried to start it (chrony's `ConditionCapability=CAP_SYS_TIME`, which a
        container lacks) counts as running: starting it again would start nothing."""
        status = f"service {name} status"
        if unit_conditions:
            show = f"systemctl show -P {{}} {_q(name)}"
            status = (f"{status} || {{ [ -d /run/systemd/system ] && [ \"$({show.format('ConditionResult')})\" = no ] "
                      f"&& [ \"$({show.format('ConditionTimestampMonotonic')})\" != 0 ]; }}")
        return cls(name, f"service {name} start", status, f"service {name} stop", running)

    @classmethod
    def daemon(cls, name: str, unit: str, command: str, pidfile: str, running: bool = True,
               socket: str = "", ready: str = "") -> Service:
        """One instance of a daemon: its systemd `unit` where systemd runs, else `command` (which
        must daemonize and write `pidfile`). Several instances of one package (e.g. two Redis
        ports on the one-box, which has no systemd) each get their own Service this way.

        `ready` (a shell check) is awaited after every start and restart, so one that never gets
        ready fails. With `socket`, a systemd socket unit that hands its listening socket to the
        daemon, a restart where systemd runs restarts the daemon alone: the socket stays open, so
        clients connecting meanwhile wait in its backlog for the new process instead of being
        refused, or reset once their request was sent."""
        systemd = "[ -d /run/systemd/system ]"
        pid = f'"$(cat {_q(pidfile)} 2>/dev/null)"'
        units = " ".join(_q(u) for u in (socket, unit) if u)
        then_ready = f" && {{ {ready}; }}" if ready else ""
        service = cls(
            name,
            # daemon-reload first: a unit file changed while the service was stopped starts as
            # written (a handler does not restart a service the converge has just started).
            start=f"{{ if {systemd}; then systemctl daemon-reload && systemctl enable --now {units}; "
                  f"else {command}; fi; }}{then_ready}",
            status=f"if {systemd}; then systemctl is-active --quiet {_q(unit)}; else kill -0 {pid}; fi",
            stop=(
                f"if {systemd}; then systemctl disable --now {units}; "
                f"else p={pid}; kill $p && while kill -0 $p 2>/dev/null; do sleep 0.1; done; "
                f"rm -f {_q(pidfile)}; fi"
            ),
            running=running,
        )
        if not socket:
            return service
        # A daemon still holding the port itself (started before it had a socket unit) stops
        # first: the socket unit could not bind beside it.
        in_place = (f"systemctl daemon-reload && if systemctl is-active --quiet {_q(socket)}; "
                    f"then systemctl restart {_q(unit)}; "
                    f"else systemctl stop {_q(unit)} && systemctl enable --now {units}; fi")
        return replace(service, restart_command=f"if {systemd}; then {{ {in_place}; }}{then_ready}; "
                                                f"else {service.stop_and_start}; fi")

    @property
    def key(self) -> str:
        return f"service {self.name}"

    @property
    def stop_and_start(self) -> str:
        """Shell that stops the service if it runs (a failed stop does not stop the restart) and
        starts it: its exit status is the start's."""
        return f"{{ ( {self.status} ) >/dev/null 2>&1 && ( {self.stop} ) || true; }} && ( {self.start} )"

    @property
    def restart(self) -> str:
        """Shell that restarts the service: its own restart command if it has one, else stop and start."""
        return self.restart_command or self.stop_and_start

    def starts(self, change: Change) -> bool:
        """Whether `change` is this service's start."""
        return change.resource == self.key and change.commands == (self.start,)

    def fact_command(self) -> str:
        return f"( {self.status} ) >/dev/null 2>&1 && echo running || echo stopped"

    def changes(self, fact: str) -> list[Change]:
        is_running = fact.strip() == "running"
        if is_running == self.running:
            return []
        if self.running:
            return [Change(self.key, "stopped", (self.start,))]
        return [Change(self.key, "running", (self.stop,))]


@dataclass(frozen=True)
class Command:
    """A command run only when its `unless` check fails (the check runs again at apply time)."""

    name: str
    run: str
    unless: str
    notify: tuple[str, ...] = ()
    sensitive: bool = False  # the command line holds a secret: show only its name

    @property
    def key(self) -> str:
        return f"command {self.name}"

    def fact_command(self) -> str:
        return f"( {self.unless} ) >/dev/null 2>&1 && echo done || echo needed"

    def changes(self, fact: str) -> list[Change]:
        if fact.strip() == "done":
            return []
        # Re-check at apply time: an earlier change in the same run may have done the work.
        guarded = f"( {self.unless} ) >/dev/null 2>&1 || ( {self.run} )"
        return [Change(self.key, "needed", (guarded,), self.notify)]


def package_daemon_held(service: str, managed_file: str, keep_off: bool = False, then: str = "") -> Command:
    """The daemon a Debian package starts on install (where policy-rc.d allows it, e.g. systemd
    hosts), held stopped until the role's own `managed_file` is in place, so that the role's
    Service starts it with the role's config. With `keep_off` (roles that run their own
    instances instead of the package's) it also stays stopped and disabled at boot afterwards.
    `then` runs after the stop."""
    systemd = "[ -d /run/systemd/system ]"
    disable = f"if {systemd}; then systemctl disable {_q(service)}; fi; " if keep_off else ""
    unless = f"grep -qs 'Managed by photostack' {_q(managed_file)}"
    if keep_off:
        unless += (
            f" && ! service {_q(service)} status >/dev/null 2>&1"
            f" && ! {{ {systemd} && systemctl is-enabled --quiet {_q(service)}; }}"
        )
    return Command(
        f"{service}: package's own instance {'off' if keep_off else 'held until configured'}",
        run=f"service {_q(service)} stop >/dev/null 2>&1; {disable}{then or 'true'}",
        unless=unless,
    )


@dataclass(frozen=True)
class Handler:
    """A command run once at the end of a converge, only if a change notified it; then the
    services it `restarts`, in turn (each one's start has waited for it to be ready, so the next
    stops only then).

    A service this same converge started after the last change that notified the handler is not
    restarted: it already runs what those changes wrote (Puppet's rule for a service it has just
    started). On a host's first converge that restart would be a needless gap in service: an app
    already answering behind nginx would drop the requests queued on its socket."""

    name: str
    run: str = ""
    restarts: tuple[Service, ...] = ()


Resource = Packages | SystemUser | Directory | File | Absent | Filesystem | Service | Command


@dataclass
class DesiredState:
    """What a role wants on a host: resources in order, and the handlers they may notify."""

    resources: list[Resource] = field(default_factory=list)
    handlers: list[Handler] = field(default_factory=list)

    def extend(self, other: DesiredState) -> None:
        """Append another role's state. Roles sharing a host may declare the very same resource
        (e.g. the shard map file); identical declarations collapse to the first."""
        self.resources += [r for r in other.resources if r not in self.resources]
        self.handlers += [h for h in other.handlers if h.name not in {x.name for x in self.handlers}]
