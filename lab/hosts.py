"""Lab hosts: each a systemd-nspawn container booting real systemd in its own network namespace.

A host has its own copy-on-write root (an overlay over the cached image), its own network
namespace with one veth into the lab bridge, its planned private address, its own cgroup (for
both the v1 `name=systemd` and the v2 unified hierarchies, so hosts never share unit cgroups and
the whole lab can be killed at once) and its console captured to a file (what EC2's
GetConsoleOutput returns).

Everything the lab creates carries a fixed name prefix or lives under one directory, so `down`
finds it all from the machine's own state (no record needed): it works after an interrupted
`up`, twice in a row, or when nothing is up.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lab.image import cache_dir

PREFIX = "psl"  # every netns, link and iptables comment of the lab starts with this
BRIDGE = f"{PREFIX}-br0"
IPTABLES_COMMENT = "photostack-lab"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_HIERARCHIES = ("unified", "systemd")  # v2 (has cgroup.kill) first, then v1 name=systemd
CGROUP_NAME = "photostack-lab"
FILES = Path(__file__).resolve().parent / "files"
FIRST_BOOT_SCRIPT = "usr/local/sbin/photostack-first-boot"
FIRST_BOOT_UNITS = ("photostack-first-boot.service", "photostack-user-data.service")
DISKS_SCRIPT = "usr/local/sbin/photostack-disks"
DISKS_UNIT = "photostack-disks.service"  # udev's and the fstab generator's part at boot
STOP_TIMEOUT_S = 15.0
NICE = 10
POLL_S = 0.2


class LabError(Exception):
    """The lab cannot do what was asked; the message is one line for the operator."""


@dataclass(frozen=True)
class HostSpec:
    """One host to boot: its name, its private address, its place on the bridge."""

    name: str
    address: str
    index: int
    extra_addresses: tuple[str, ...] = ()
    """Other addresses the host answers on (the bastion's public address)."""

    @property
    def netns(self) -> str:
        return f"{PREFIX}-{self.name}"

    @property
    def veth(self) -> str:
        return f"{PREFIX}v{self.index}"  # root side; interface names are at most 15 characters


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, its output captured; a failure raises with the command's own message."""
    result = subprocess.run(argv, capture_output=True, text=True)
    if check and result.returncode:
        raise LabError(f"{' '.join(argv)}: {(result.stderr or result.stdout).strip()}")
    return result


def hosts_dir() -> Path:
    """Where each host's overlay (upper, work, merged root) and console live."""
    return cache_dir() / "hosts"


def host_dir(name: str) -> Path:
    return hosts_dir() / name


def cgroup(hierarchy: str, *parts: str) -> Path:
    return CGROUP_ROOT / hierarchy / CGROUP_NAME / Path(*parts) if parts else CGROUP_ROOT / hierarchy / CGROUP_NAME


# --- the bridge -------------------------------------------------------------------------------


def check_network_free(network: ipaddress.IPv4Network) -> None:
    """Refuse a lab network that overlaps any route the machine already has (other than ours)."""
    routes = json.loads(run("ip", "-j", "route", "show").stdout or "[]")
    for route in routes:
        if route.get("dev") == BRIDGE or route["dst"] == "default":
            continue
        if ipaddress.ip_network(route["dst"], strict=False).overlaps(network):
            raise LabError(f"lab network {network} overlaps this machine's route {route['dst']} "
                           f"(dev {route.get('dev')}): choose another photostack:vpcCidr")


def routes_to_bridge(address: str) -> bool:
    """Whether the root namespace sends packets for `address` to the lab bridge (never elsewhere)."""
    found = json.loads(run("ip", "-j", "route", "get", address, check=False).stdout or "[]")
    return bool(found) and found[0].get("dev") == BRIDGE


def bridge_up(network: ipaddress.IPv4Network, extra_routes: tuple[str, ...] = ()) -> str:
    """Create the lab bridge with the network's first address (a connected route on the bridge,
    so lab traffic can never reach the default gateway) and return that address."""
    check_network_free(network)
    gateway = str(next(network.hosts()))
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "replace", f"{gateway}/{network.prefixlen}", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    for address in extra_routes:
        run("ip", "route", "replace", f"{address}/32", "dev", BRIDGE)
    _iptables_up(network)
    for address in (str(network.broadcast_address - 1), *extra_routes):
        if not routes_to_bridge(address):
            raise LabError(f"{address} does not route to {BRIDGE}: refusing to send lab traffic elsewhere")
    return gateway


def _iptables_up(network: ipaddress.IPv4Network) -> None:
    """Lab packets never leave through the machine (no forwarding off the bridge)."""
    comment = ["-m", "comment", "--comment", IPTABLES_COMMENT]
    for rule in (["FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP"],
                 ["FORWARD", "-o", BRIDGE, "!", "-i", BRIDGE, "-j", "DROP"]):
        add_iptables_rule("filter", rule + comment)


def add_iptables_rule(table: str, rule: list[str]) -> None:
    """Insert a rule (tagged with the lab's comment) unless it is already there."""
    if run("iptables", "-w", "-t", table, "-C", *rule, check=False).returncode:
        run("iptables", "-w", "-t", table, "-I", *rule)


# --- one host ---------------------------------------------------------------------------------


def _mount_root(spec: HostSpec, image: Path) -> Path:
    base = host_dir(spec.name)
    upper, work, root = base / "upper", base / "work", base / "root"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)  # only root on this machine looks in
    for path in (upper, work, root):
        path.mkdir(exist_ok=True)
    upper.chmod(0o755)  # the host's own `/`: its services' users must traverse it
    if not os.path.ismount(root):
        run("mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir={image},upperdir={upper},workdir={work}", str(root))
    return root


def _install_first_boot(root: Path, spec: HostSpec) -> None:
    """The cloud-init stand-in, the disks' stand-in and this host's name, written into its own
    (upper) root."""
    for source, script in (("first-boot.py", FIRST_BOOT_SCRIPT), ("disks.sh", DISKS_SCRIPT)):
        shutil.copyfile(FILES / source, root / script)
        (root / script).chmod(0o755)
    units = root / "etc/systemd/system"
    for unit, target in (*((u, "multi-user.target") for u in FIRST_BOOT_UNITS), (DISKS_UNIT, "local-fs.target")):
        wants = units / f"{target}.wants"
        wants.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FILES / unit, units / unit)
        (wants / unit).unlink(missing_ok=True)
        (wants / unit).symlink_to(f"/etc/systemd/system/{unit}")
    # EC2 instances start with the DHCP name (ip-10-0-0-1); user_data may set its own.
    (root / "etc/hostname").write_text("ip-" + spec.address.replace(".", "-") + "\n")


def connect_namespace(spec: HostSpec, gateway: str, prefixlen: int, metadata_address: str | None = None) -> None:
    """`spec`'s network namespace with one veth into the bridge, its addresses, and (for a host)
    the route to the instance metadata service."""
    if spec.netns not in run("ip", "netns", "list").stdout.split():
        run("ip", "netns", "add", spec.netns)
    if not Path(f"/sys/class/net/{spec.veth}").exists():
        run("ip", "link", "add", spec.veth, "type", "veth", "peer", "name", "eth0", "netns", spec.netns)
    run("ip", "link", "set", spec.veth, "master", BRIDGE, "up")
    ns = ("ip", "-n", spec.netns)
    run(*ns, "link", "set", "lo", "up")
    for address in (spec.address, *spec.extra_addresses):
        length = prefixlen if address == spec.address else 32
        run(*ns, "addr", "replace", f"{address}/{length}", "dev", "eth0")
    run(*ns, "link", "set", "eth0", "up")
    if metadata_address:  # the instance metadata service's link-local address, through the lab gateway
        run(*ns, "route", "replace", f"{metadata_address}/32", "via", gateway, "dev", "eth0")
    if not routes_to_bridge(spec.address):
        raise LabError(f"host {spec.name}: {spec.address} does not route to {BRIDGE}")


def make_cgroups(name: str) -> list[Path]:
    """The lab cgroups of `name` in both hierarchies, created if missing (a process joins them first)."""
    paths = [cgroup(h, name) for h in CGROUP_HIERARCHIES]
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
    return paths


def spawn_in_cgroup(service: str, argv: list[str], **popen: object) -> subprocess.Popen[bytes]:
    """Start a lab service process inside the lab's cgroup `service` (so `down` ends it)."""
    procs = " ".join(f"echo $$ > {p}/cgroup.procs;" for p in make_cgroups(service))
    return subprocess.Popen(["sh", "-c", f'{procs} exec "$@"', "sh", *argv], start_new_session=True, **popen)


def _install_environment(root: Path, environment: dict[str, str]) -> None:
    """Settings every process of the host sees: login sessions (pam_env) and systemd services."""
    lines = "".join(f"{key}={value}\n" for key, value in sorted(environment.items()))
    (root / "etc/environment").write_text(lines)
    conf = root / "etc/systemd/system.conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    values = " ".join(f'"{key}={value}"' for key, value in sorted(environment.items()))
    (conf / "photostack-lab.conf").write_text(f"[Manager]\nDefaultEnvironment={values}\n")
    # Root's processes that start from an empty environment (the alert hooks: `env -i`) find the
    # lab's AWS as an EC2 host's SDK finds AWS without settings: in the shared config file.
    settings = {"endpoint_url": environment.get("AWS_ENDPOINT_URL"), "region": environment.get("AWS_DEFAULT_REGION")}
    if any(settings.values()):
        aws = root / "root/.aws"
        aws.mkdir(parents=True, exist_ok=True, mode=0o700)
        (aws / "config").write_text("[default]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items() if v))


def _install_registry_access(root: Path, names: dict[str, str], certificates: list[Path]) -> None:
    """Names the host resolves to the lab's relays, and the CA certificates their TLS needs
    (added to the system bundle, and kept where update-ca-certificates finds them again)."""
    hosts_file = root / "etc/hosts"
    lines = [line for line in hosts_file.read_text().splitlines() if "# photostack-lab" not in line]
    lines += [f"{address} {name}  # photostack-lab relay" for name, address in sorted(names.items())]
    hosts_file.write_text("\n".join(lines) + "\n")
    local = root / "usr/local/share/ca-certificates"
    local.mkdir(parents=True, exist_ok=True)
    bundle = root / "etc/ssl/certs/ca-certificates.crt"
    text = bundle.read_text()
    for certificate in certificates:
        shutil.copyfile(certificate, local / certificate.name)
        pem = certificate.read_text()
        if pem not in text:
            text += pem if pem.endswith("\n") else pem + "\n"
    bundle.write_text(text)
    (root / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")


# How a Nitro instance shows its one attached EBS volume besides the root volume: the second NVMe
# device, which udev links under the NVMe model and serial number (the volume id without its dash).
NITRO_DEVICE = "nvme1n1"
NITRO_LINK = "nvme-Amazon_Elastic_Block_Store_{serial}"


def nitro_volume(volume: tuple[str, int] | None) -> dict[str, dict]:
    """`start`'s arguments for a host's attached EBS volume (volume id, size in GiB), none without
    one: the volume's loop device as the host's NVMe device, linked by its serial number."""
    if volume is None:
        return {}
    volume_id, size_gb = volume
    return {"volumes": {f"/dev/{NITRO_DEVICE}": volume_device(volume_id, size_gb)},
            "disk_ids": {NITRO_LINK.format(serial=volume_id.replace("-", "")): NITRO_DEVICE}}


def volume_device(volume_id: str, size_gb: int) -> Path:
    """The loop device standing in for EBS volume `volume_id`: over a sparse file of `size_gb` GiB
    that outlives the hosts it is attached to, as a volume outlives its instances (`down` detaches
    and deletes it with the rest); the one already attached to that file, if any."""
    image = hosts_dir() / "_volumes" / f"{volume_id}.img"
    image.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    attached = run("losetup", "-j", str(image)).stdout.split(":", 1)[0]
    if attached:
        return Path(attached)
    if not image.exists():
        with image.open("wb") as out:
            out.truncate(size_gb << 30)
    return Path(run("losetup", "--find", "--show", str(image)).stdout.strip())


def _disk_links(name: str, disk_ids: dict[str, str]) -> Path:
    """The host's /dev/disk/by-id: what udev links on an instance (hosts run no udev), each link
    name → the device's name in the host's /dev."""
    by_id = host_dir(name) / "by-id"
    by_id.mkdir(exist_ok=True)
    for link, device in disk_ids.items():
        (by_id / link).unlink(missing_ok=True)
        (by_id / link).symlink_to(f"../../{device}")
    return by_id


def start(spec: HostSpec, image: Path, gateway: str, prefixlen: int, metadata_address: str,
          environment: dict[str, str] | None = None, names: dict[str, str] | None = None,
          certificates: list[Path] | None = None, volumes: dict[str, Path] | None = None,
          disk_ids: dict[str, str] | None = None) -> int:
    """Boot `spec` (its overlay, network and cgroup first); returns the nspawn process id.
    `environment` is set for every process of the host (the lab's AWS endpoint); `names` and
    `certificates` give it the registries through the lab's relays; `volumes` maps a device name
    inside the host (e.g. /dev/nvme1n1) to a block device here; `disk_ids` are the host's
    /dev/disk/by-id links (link name → device name in its /dev)."""
    root = _mount_root(spec, image)
    _install_first_boot(root, spec)
    _install_environment(root, environment or {})
    _install_registry_access(root, names or {}, certificates or [])
    connect_namespace(spec, gateway, prefixlen, metadata_address)
    procs = " ".join(f"echo $$ > {p}/cgroup.procs;" for p in make_cgroups(spec.name))
    binds = [f"--bind={device}:{inside}" for inside, device in (volumes or {}).items()]
    if disk_ids:
        binds.append(f"--bind-ro={_disk_links(spec.name, disk_ids)}:/dev/disk/by-id")
    # Niced: the lab shares this machine's cores with other work, which keeps its priority.
    argv = ["sh", "-c", f'{procs} exec "$@"', "sh", "nice", "-n", str(NICE), "systemd-nspawn", "-q", "--register=no", "--keep-unit",
            "-b", "-D", str(root), f"--network-namespace-path=/run/netns/{spec.netns}",
            "--capability=CAP_NET_ADMIN", f"--machine={spec.name.replace('_', '-')}", "--console=read-only", *binds]
    console = (host_dir(spec.name) / "console.log").open("ab")
    env = {**os.environ, "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                               env=env, start_new_session=True)
    console.close()
    (host_dir(spec.name) / "nspawn.pid").write_text(f"{process.pid}\n")
    return process.pid


def console_text(name: str) -> str:
    """What the host printed to its console so far (empty for an unknown host)."""
    path = host_dir(name) / "console.log"
    return path.read_text(errors="replace") if path.exists() else ""


def wait_port(address: str, port: int, timeout_s: float) -> bool:
    """Whether `address:port` accepts a TCP connection within `timeout_s` (only ever on the bridge)."""
    if not routes_to_bridge(address):
        raise LabError(f"{address} does not route to {BRIDGE}: not connecting")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1):
                return True
        except OSError:
            time.sleep(POLL_S)
    return False


def cgroup_pids(hierarchy: str, *parts: str) -> list[int]:
    """Every process in a lab cgroup and its descendants."""
    pids = []
    for directory, _, files in os.walk(cgroup(hierarchy, *parts)):  # cgroups come and go meanwhile
        if "cgroup.procs" in files:
            try:
                pids += [int(pid) for pid in Path(directory, "cgroup.procs").read_text().split()]
            except OSError as exc:  # the cgroup removed while read: ENOENT, or ENODEV mid-removal
                if exc.errno not in (errno.ENOENT, errno.ENODEV):
                    raise
    return pids


def stop(*names: str, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Shut hosts down cleanly, all at once (SIGTERM to each nspawn: the container's systemd
    powers off), and kill what is left of each after `timeout_s`."""
    for name in names:
        pid_file = host_dir(name) / "nspawn.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout_s
    while any(cgroup_pids("unified", name) for name in names) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    for name in names:
        kill(name)


def kill(*parts: str) -> None:
    """Kill every process of a lab cgroup at once (the hard power-off) and wait until they are gone."""
    base = cgroup("unified", *parts)
    if base.is_dir():
        (base / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(cgroup_pids(h, *parts) for h in CGROUP_HIERARCHIES):
        if time.monotonic() > deadline:
            raise LabError(f"processes of lab cgroup {'/'.join(parts) or CGROUP_NAME} survive cgroup.kill")
        time.sleep(POLL_S)
    for hierarchy in CGROUP_HIERARCHIES:
        _remove_cgroup_tree(cgroup(hierarchy, *parts))


def remove(name: str) -> None:
    """Power a host off at once and delete it: its processes, root disk, network namespace (its
    veth goes with it) and directory — a terminated instance. Nothing happens for an unknown name."""
    kill(name)
    base = str(host_dir(name))
    for point in (p for p in lab_mounts() if p == base or p.startswith(base + "/")):
        if run("umount", point, check=False).returncode:
            run("umount", "-l", point)
    namespace = HostSpec(name, "", 0).netns
    if namespace in lab_namespaces():
        run("ip", "netns", "del", namespace)
    shutil.rmtree(host_dir(name), ignore_errors=True)


def _remove_cgroup_tree(path: Path) -> None:
    for directory, _, _ in os.walk(path, topdown=False):  # children first; cgroup files go with their dir
        Path(directory).rmdir()


# --- the whole lab ----------------------------------------------------------------------------


def lab_mounts() -> list[str]:
    """Mount points under the lab's cache dir (host roots; /proc of an interrupted image build),
    deepest first."""
    base = str(cache_dir())
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return sorted((p for p in points if p == base or p.startswith(base + "/")), key=len, reverse=True)


def lab_loop_devices() -> list[str]:
    """Loop devices backed by files under the lab's cache dir."""
    listing = json.loads(run("losetup", "-J", "-l", check=False).stdout or '{"loopdevices": []}')
    base = str(cache_dir()) + "/"
    return [d["name"] for d in listing.get("loopdevices", []) if (d.get("back-file") or "").startswith(base)]


def lab_namespaces() -> list[str]:
    return [n for n in run("ip", "netns", "list").stdout.split() if n.startswith(f"{PREFIX}-")]


def lab_links() -> list[str]:
    return [link["ifname"] for link in json.loads(run("ip", "-j", "link", "show").stdout or "[]")
            if link["ifname"].startswith(PREFIX)]


def lab_iptables_rules() -> list[tuple[str, str]]:
    """(table, rule) of every iptables rule carrying the lab's comment."""
    found = []
    for table in ("filter", "nat"):
        for line in run("iptables", "-w", "-t", table, "-S").stdout.splitlines():
            if line.startswith("-A ") and IPTABLES_COMMENT in line:
                found.append((table, line))
    return found


def leftovers() -> list[str]:
    """Everything of the lab still on this machine, one line each (empty when the lab is down)."""
    found = [f"process {pid}" for h in CGROUP_HIERARCHIES for pid in cgroup_pids(h)]
    found += [f"cgroup {cgroup(h)}" for h in CGROUP_HIERARCHIES if cgroup(h).exists()]
    found += [f"mount {m}" for m in lab_mounts()]
    found += [f"loop device {d}" for d in lab_loop_devices()]
    found += [f"network namespace {n}" for n in lab_namespaces()]
    found += [f"link {link}" for link in lab_links()]
    found += [f"iptables -t {t} {rule}" for t, rule in lab_iptables_rules()]
    found += [f"host dir {hosts_dir()}"] if hosts_dir().exists() else []
    return found


def down() -> None:
    """Remove every trace of the lab: processes, cgroups, mounts, loop devices, namespaces, links,
    iptables rules, host trees (the cached image stays). Safe at any time, and when nothing is up."""
    if hosts_dir().is_dir():
        # Hosts power off cleanly; the lab's services (no nspawn) are killed with the rest below.
        stop(*sorted(p.name for p in hosts_dir().iterdir()
                     if (p / "nspawn.pid").exists() and cgroup_pids("unified", p.name)))
    kill()  # whatever is left: lab services and any host not stopped above
    for point in lab_mounts():
        if run("umount", point, check=False).returncode:
            run("umount", "-l", point)
    for device in lab_loop_devices():
        run("losetup", "-d", device)
    for namespace in lab_namespaces():
        run("ip", "netns", "del", namespace)
    for link in lab_links():
        run("ip", "link", "del", link, check=False)  # a veth goes with its peer's namespace
    for table, rule in lab_iptables_rules():
        run("iptables", "-w", "-t", table, "-D", *rule.split()[1:], check=False)
    if lab_mounts():
        raise LabError(f"lab mounts remain ({', '.join(lab_mounts())}): host trees kept")
    shutil.rmtree(hosts_dir(), ignore_errors=True)
    for partial in cache_dir().glob("*.partial"):  # an interrupted image build
        shutil.rmtree(partial, ignore_errors=True)
    remaining = leftovers()
    if remaining:
        raise LabError("lab leftovers after down: " + "; ".join(remaining))
