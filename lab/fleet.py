"""`up` and `down` of a lab stack: its offline plan realised as booted hosts on the lab bridge.

`up` builds (or reuses) the image, puts the plan's whole VPC range on the lab bridge (the VPC
router's address, the range's first, is the bridge's), then boots every instance in waves (CPU is
the limit on this machine) with its security groups (lab/security_groups.py) and, where its
instance has an EBS volume attached, that volume as a Nitro instance shows it (hosts.nitro_volume),
waits until each host's sshd answers, and starts the load balancer stand-in (lab/lb.py) in front of
the plan's targets. `down` removes everything.
"""

from __future__ import annotations

import dataclasses
import json
import re
import os
import secrets
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from infra.config import StackConfig
from infra.secrets_store import parameter_name
from infra.storage import build_wheelhouse
from lab import hosts, image, lb, security_groups, seed
from lab.planned_instances import LabPlan, lab_plan

METADATA_ADDRESS = "169.254.169.254"
API_PORT = 4566  # on the lab gateway address only: never a one-box port (those are on loopback)
METADATA_PORT = 8169
AWS_SERVICE = "_aws"  # the lab's AWS process: its cgroup and files (no host has a leading underscore)
AWS_START_TIMEOUT_S = 120.0
REPO_ROOT = Path(__file__).resolve().parent.parent
# The package registry the roles and user_data install from: Debian's archive, and no PyPI (Python
# packages come from the release bundle's wheelhouse, which the lab thereby proves complete). Hosts
# have no route off the lab bridge: they reach it through relays on the gateway (the machine's own
# egress), by name, with this machine's CA bundle.
REGISTRIES = ("deb.debian.org",)
REGISTRY_PORTS = (80,)  # the image's sources.list: plain HTTP (apt checks the archive's signatures)
RELAY_SERVICE = "_relay"
MACHINE_CA_DIR = Path("/usr/local/share/ca-certificates")
WAVE = 4  # hosts booted at once; systemd's boot is CPU-bound on 2 cores
SSH_TIMEOUT_S = 120.0


@dataclass
class UpReport:
    """What `up` did and how long each part took (seconds)."""

    image_s: float = 0.0
    endpoint: str = ""
    instance_ids: dict[str, str] = field(default_factory=dict)
    boot_s: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0
    failed: list[str] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)


def specs(plan: LabPlan) -> list[hosts.HostSpec]:
    """One host per planned instance, its planned addresses, its place on the bridge."""
    return [hosts.HostSpec(i.node, i.private_ip, index, (i.public_ip,) if i.public_ip else ())
            for index, i in enumerate(plan.instances)]


def taken_addresses(plan: LabPlan) -> set[str]:
    """Addresses of the lab network the plan gives out (the gateway's, the instances')."""
    return {str(next(plan.network.hosts())), *(i.private_ip for i in plan.instances),
            *(i.public_ip for i in plan.instances if i.public_ip)}


def load_balancer(plan: LabPlan, config: StackConfig) -> lb.Balancer:
    """The load balancer stand-in of the plan, at the highest free address of its first subnet
    (the same every time)."""
    address = lb.free_address(plan.plan, lb.subnets_of(plan.plan)[0], taken_addresses(plan))
    return lb.from_plan(plan.plan, config.domain, address)


def aws_tls_address(plan: LabPlan, config: StackConfig) -> str:
    """Where the lab AWS API's HTTPS endpoint listens (next below the load balancer)."""
    taken = taken_addresses(plan) | {load_balancer(plan, config).address}
    return lb.free_address(plan.plan, lb.subnets_of(plan.plan)[0], taken)


def operator_key() -> Path:
    """The lab operator's SSH key (made once, kept with the image): installed for the default user
    of every host through the metadata service, as an EC2 key pair is. `PHOTOSTACK_SSH_KEY` names it."""
    key = image.cache_dir() / "operator" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        hosts.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "photostack-lab-operator", "-f", str(key))
    return key


def aws_environment(gateway: str, region: str) -> dict[str, str]:
    """The standard AWS settings that point boto3 (ops, hosts) at the lab's AWS."""
    return {"AWS_ENDPOINT_URL": f"http://{gateway}:{API_PORT}", "AWS_DEFAULT_REGION": region}


def _firewall(gateway: str) -> None:
    """Hosts reach the lab's own services on the gateway and nothing else of this machine; the
    metadata address is the lab's metadata service."""
    comment = ["-m", "comment", "--comment", hosts.IPTABLES_COMMENT]
    hosts.add_iptables_rule("nat", ["PREROUTING", "-i", hosts.BRIDGE, "-d", METADATA_ADDRESS, "-p", "tcp",
                                    "--dport", "80", "-j", "DNAT", "--to-destination", f"{gateway}:{METADATA_PORT}",
                                    *comment])
    # Inserted in reverse: each goes to the top of INPUT.
    hosts.add_iptables_rule("filter", ["INPUT", "-i", hosts.BRIDGE, "-j", "DROP", *comment])
    hosts.add_iptables_rule("filter", ["INPUT", "-i", hosts.BRIDGE, "-m", "conntrack", "--ctstate",
                                       "ESTABLISHED,RELATED", "-j", "ACCEPT", *comment])
    hosts.add_iptables_rule("filter", ["INPUT", "-i", hosts.BRIDGE, "-d", gateway, "-p", "tcp", "-m", "multiport",
                                       "--dports", ",".join(map(str, (API_PORT, METADATA_PORT, *REGISTRY_PORTS))), "-j", "ACCEPT", *comment])


def start_relays(gateway: str) -> dict[str, str]:
    """Relay the registries' ports from the gateway to the address this machine resolves them to;
    returns the host-side name → address entries."""
    upstreams = {socket.gethostbyname(name) for name in REGISTRIES}
    if len(upstreams) != 1:
        raise hosts.LabError(f"registries {', '.join(REGISTRIES)} resolve to {len(upstreams)} addresses here; "
                             "the lab relays one (set them to one proxy, or extend lab/fleet.py)")
    upstream = upstreams.pop()
    for port in REGISTRY_PORTS:
        hosts.spawn_in_cgroup(RELAY_SERVICE, ["socat", f"TCP-LISTEN:{port},bind={gateway},fork,reuseaddr",
                                   f"TCP:{upstream}:{port}"], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {name: gateway for name in REGISTRIES}


def start_aws(plan: LabPlan, config: StackConfig, gateway: str, public_key: str,
              host_settings: dict[str, object]) -> dict[str, str]:
    """Start the lab's AWS (moto + metadata) in the lab's cgroup, seeded from the plan; returns
    node → instance id. The seed (with the generated passwords) goes over a pipe, never to disk;
    so do `host_settings` (`hosts.start`'s arguments), with which it makes the hosts follow
    the instances' states (lab/ec2_hosts.py)."""
    workdir = hosts.host_dir(AWS_SERVICE)
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = (workdir / "aws.log").open("ab")
    process = hosts.spawn_in_cgroup(AWS_SERVICE, [sys.executable, "-m", "lab.aws"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=log, cwd=REPO_ROOT,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    log.close()
    message = {"region": config.region, "address": gateway, "api_port": API_PORT, "metadata_port": METADATA_PORT,
               "secret_seed": secrets.token_hex(16), "ssh_public_key": public_key,
               "consoles": str(hosts.hosts_dir()), "calls": str(workdir / "calls.jsonl"), "seed": seed.from_plan(plan, workdir),
               "hosts": host_settings}
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(message).encode())
    process.stdin.close()
    ready, _, _ = select.select([process.stdout], [], [], AWS_START_TIMEOUT_S)
    line = process.stdout.readline() if ready else b""
    process.stdout.close()
    if not line:
        raise hosts.LabError(f"the lab's AWS did not start within {AWS_START_TIMEOUT_S:.0f} s; see {workdir / 'aws.log'}")
    return json.loads(line)


def attached_volumes(endpoint: str, region: str, instance_ids: dict[str, str]) -> dict[str, tuple[str, int]]:
    """node → (volume id, size in GiB) of the EBS volume attached to its instance in the lab's AWS."""
    import boto3  # the lab's own AWS, as the operator

    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=region, aws_access_key_id="lab-operator",
                       aws_secret_access_key="lab-operator")
    nodes = {instance: node for node, instance in instance_ids.items()}
    # Each instance's root volume is its host's own disk (the overlay root), not a volume to show.
    roots = {i["InstanceId"]: i.get("RootDeviceName") for r in ec2.describe_instances(InstanceIds=list(nodes))["Reservations"]
             for i in r["Instances"]}
    found = {}
    for volume in ec2.describe_volumes(Filters=[{"Name": "attachment.status", "Values": ["attached"]}])["Volumes"]:
        for attachment in volume["Attachments"]:
            if attachment["InstanceId"] in nodes and attachment["Device"] != roots[attachment["InstanceId"]]:
                found[nodes[attachment["InstanceId"]]] = (volume["VolumeId"], volume["Size"])
    return found


def up(config: StackConfig, stack: str) -> UpReport:
    """Realise the plan of `stack`: every instance booted and answering SSH, or a LabError."""
    started = time.monotonic()
    report = UpReport()
    plan = lab_plan(config, stack)
    # The bundle's wheelhouse first (once per lock: cached): a locked package without a wheel
    # stops `up` here, naming it, before anything runs.
    build_wheelhouse()
    image_started = time.monotonic()
    tree = image.build()
    report.image_s = time.monotonic() - image_started
    public = tuple(i.public_ip for i in plan.instances if i.public_ip)
    gateway = hosts.bridge_up(plan.network, public)
    _firewall(gateway)
    public_key = config.ssh_public_key or operator_key().with_suffix(".pub").read_text().strip()
    names = start_relays(gateway)
    # pgBackRest reaches S3 over HTTPS by AWS's own names: the lab's AWS behind TLS, which hosts trust.
    aws_tls = aws_tls_address(plan, config)
    tls_names = lb.aws_tls_names(config.region, [r.outputs["bucket"] for r in plan.plan.of_type(seed.BUCKET)])
    lb.start_aws_tls(aws_tls, tls_names, f"{gateway}:{API_PORT}", gateway, plan.network.prefixlen)
    names.update({name: aws_tls for name in tls_names})
    certificates = [*sorted(MACHINE_CA_DIR.glob("*.crt")), lb.ca_certificate()]
    balancer = load_balancer(plan, config)
    groups = security_groups.SecurityGroups.from_plan(plan.plan, gateway, balancer.address)
    all_specs = specs(plan)
    host_settings = {"image": str(tree), "gateway": gateway, "prefixlen": plan.network.prefixlen,
                     "metadata_address": METADATA_ADDRESS, "environment": aws_environment(gateway, config.region),
                     "names": names, "certificates": [str(c) for c in certificates],
                     "specs": [dataclasses.asdict(spec) for spec in all_specs], "security_groups": groups.to_json(),
                     "lb_socket": str(lb.stats_socket())}
    report.instance_ids = start_aws(plan, config, gateway, public_key, host_settings)
    report.endpoint = aws_environment(gateway, config.region)["AWS_ENDPOINT_URL"]
    volumes = attached_volumes(report.endpoint, config.region, report.instance_ids)
    for wave_start in range(0, len(all_specs), WAVE):
        wave = all_specs[wave_start:wave_start + WAVE]
        boot_started = {}
        for spec in wave:
            boot_started[spec.name] = time.monotonic()
            hosts.start(spec, tree, gateway, plan.network.prefixlen, METADATA_ADDRESS,
                        environment=aws_environment(gateway, config.region), names=names,
                        certificates=certificates, **hosts.nitro_volume(volumes.get(spec.name)))
        groups.protect(all_specs)  # the wave's namespaces, before their services are up
        for spec in wave:
            if hosts.wait_port(spec.address, 22, SSH_TIMEOUT_S):
                report.boot_s[spec.name] = time.monotonic() - boot_started[spec.name]
            else:
                report.failed.append(f"{spec.name}: sshd on {spec.address}:22 not up after {SSH_TIMEOUT_S:.0f} s")
    lb.start(balancer, gateway, plan.network.prefixlen)
    report.urls["load balancer (lab CA: " + str(lb.ca_certificate()) + ")"] = balancer.url
    report.urls.update(dashboard_urls(config, stack, balancer))
    report.total_s = time.monotonic() - started
    return report


def dashboard_urls(config: StackConfig, stack: str, balancer: lb.Balancer) -> dict[str, str]:
    """The dashboards through the load balancer, and how to log in: the lab generates the password
    into its AWS's SSM, where `pulumi up` puts the one a user sets."""
    login = config.monitoring.dashboard_password
    if login is None:
        return {}
    how = f"login {login.user}, password in the lab's SSM at {parameter_name(stack, 'dashboardPassword')}"
    return {f"dashboard ({how})": f"{balancer.url}munin/", "wallboard": f"{balancer.url}wallboard/"}


FINISHED = re.compile(r"Cloud-init v\. lab finished: user_data exit status (\d+) after ([\d.]+) seconds")


def first_boot(name: str) -> tuple[int, float] | None:
    """(exit status, seconds) of a host's user_data as its console reports it, or None while it runs."""
    found = FINISHED.findall(hosts.console_text(name))
    return (int(found[-1][0]), float(found[-1][1])) if found else None


def wait_first_boots(names: list[str], timeout_s: float) -> dict[str, tuple[int, float] | None]:
    """Each host's user_data result, waiting up to `timeout_s` for all of them to finish."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(first_boot(n) is None for n in names):
        time.sleep(1)
    return {name: first_boot(name) for name in names}


def down() -> None:
    """Remove the lab (every host, the bridge and the lab's rules); the cached image stays."""
    hosts.down()
