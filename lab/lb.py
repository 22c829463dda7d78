"""The ALB stand-in: Debian's HAProxy, configured from the plan's load balancer, on the lab bridge;
and, with the same HAProxy, the lab AWS API's HTTPS endpoint under AWS's own S3 host names.

Everything it does is read from the plan, nothing is restated here: the HTTPS listener (TLS
terminated with a lab CA's certificate for the stack's domain, `X-Forwarded-For`/`-Proto`/`-Port`
set as the ALB sets them), its listener rules (path patterns → fixed responses or forwards), the
HTTP listener's redirect, and each target group's members (the attached instances' planned
addresses) and active health check (path, port, matcher, interval, timeout, healthy and
unhealthy thresholds). It runs in its own network namespace at an address of the load balancer's
first subnet (as the ALB's nodes sit in the public subnets), in the lab's cgroup; `down` removes
it with the rest of the lab. The product only sees requests coming from the load balancer.

Programs that cannot be pointed at an endpoint URL over plain HTTP (pgBackRest 2.45: S3 over
HTTPS at `[bucket.]s3.<region>.amazonaws.com`) reach the lab's AWS through `start_aws_tls`: TLS with
a lab CA certificate for those names, which the lab hosts trust and resolve to it.

Members start as the plan's attachments and then follow target registration through the ELBv2
API (lab/lb_targets.py, at runtime through HAProxy's admin socket: SPARE_SLOTS per group take
targets of nodes the plan does not attach). Not stood in: the ALB's deregistration delay (a
deregistered target finishes its requests in flight, with HAProxy's own timeouts), and TLS policy
details beyond TLS 1.2 as minimum.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.offline_plan import Plan, reveal
from lab import hosts
from lab.image import cache_dir

SERVICE = "_lb"  # its cgroup and files (no host has a leading underscore)
NAME = "lb"  # its network namespace: psl-lb
VETH_INDEX = 250  # its veth on the bridge: pslv250 (hosts count up from 0)
AWS_TLS_SERVICE = "_aws_tls"
AWS_TLS_NAME = "aws-tls"
AWS_TLS_VETH_INDEX = 251
START_TIMEOUT_S = 30.0
HTTP_PORT = 80
HTTPS_PORT = 443
IDLE_TIMEOUT_S = 60  # the ALB's default idle timeout
CA_DAYS = 3650
STATS_TIMEOUT_S = 5.0
SPARE_SLOTS = 2  # servers per backend, in maintenance until a target registered after `up` takes one

LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
LISTENER_RULE = "aws:lb/listenerRule:ListenerRule"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
ATTACHMENT = "aws:lb/targetGroupAttachment:TargetGroupAttachment"
SUBNET = "aws:ec2/subnet:Subnet"
INSTANCE = "aws:ec2/instance:Instance"


@dataclass(frozen=True)
class HealthCheck:
    """A target group's health check, as the plan declares it."""

    path: str
    port: str  # "traffic-port" or a number
    matcher: str
    interval_s: int
    timeout_s: int
    healthy_threshold: int
    unhealthy_threshold: int


@dataclass(frozen=True)
class TargetGroup:
    """A target group: its ARN (its name here), health check and members."""

    name: str
    health: HealthCheck
    members: tuple[tuple[str, str, int], ...]  # (node, address, port)


@dataclass(frozen=True)
class Rule:
    priority: int
    paths: tuple[str, ...]
    action: dict[str, Any]


@dataclass(frozen=True)
class Balancer:
    """What the stand-in serves: its address, the domain, the rules and the target groups."""

    address: str
    domain: str
    default_group: str
    rules: tuple[Rule, ...]
    groups: tuple[TargetGroup, ...]
    redirect: dict[str, Any]

    @property
    def url(self) -> str:
        return f"https://{self.address}/"


def _int(value: Any) -> int:
    return int(float(value))


def free_address(plan: Plan, subnet_id: str, taken: set[str]) -> str:
    """The highest address of the plan's subnet `subnet_id` not in `taken` (hosts take planned ones)."""
    subnets = {f"{r.name}-id": reveal(r.inputs)["cidrBlock"] for r in plan.of_type(SUBNET)}
    network = ipaddress.ip_network(subnets[subnet_id])
    for candidate in reversed(list(network.hosts())[-16:]):
        if str(candidate) not in taken:
            return str(candidate)
    raise hosts.LabError(f"no free address at the end of {network}")


def subnets_of(plan: Plan) -> list[str]:
    """The subnets of the plan's (one) application load balancer."""
    (alb,) = plan.of_type(LOAD_BALANCER)
    return reveal(alb.inputs)["subnets"]


def from_plan(plan: Plan, domain: str, address: str) -> Balancer:
    """The plan's (one) application load balancer at `address`: listeners, rules, target groups
    and members."""
    addresses = {f"{r.name}-id": reveal(r.outputs)["privateIp"] for r in plan.of_type(INSTANCE)}
    nodes = {f"{r.name}-id": (reveal(r.inputs).get("tags") or {}).get("photostack:node", r.name)
             for r in plan.of_type(INSTANCE)}
    groups = []
    for resource in plan.of_type(TARGET_GROUP):
        inputs, arn = reveal(resource.inputs), resource.outputs["arn"]
        check = inputs["healthCheck"]
        members = tuple(sorted(
            (nodes[a["targetId"]], addresses[a["targetId"]], _int(a.get("port", inputs["port"])))
            for a in (reveal(r.inputs) for r in plan.of_type(ATTACHMENT)) if a["targetGroupArn"] == arn))
        groups.append(TargetGroup(arn, HealthCheck(
            check["path"], str(check.get("port", "traffic-port")), str(check.get("matcher", "200")),
            _int(check["interval"]), _int(check["timeout"]), _int(check["healthyThreshold"]),
            _int(check["unhealthyThreshold"])), members))
    listeners = {reveal(r.inputs)["protocol"]: (r.outputs["arn"], reveal(r.inputs)) for r in plan.of_type(LISTENER)}
    https_arn, https = listeners["HTTPS"]
    (forward,) = [a for a in https["defaultActions"] if a["type"] == "forward"]
    rules = tuple(sorted(
        (Rule(_int(i["priority"]), tuple(v for c in i["conditions"] for v in c["pathPattern"]["values"]), i["actions"][0])
         for i in (reveal(r.inputs) for r in plan.of_type(LISTENER_RULE)) if i["listenerArn"] == https_arn),
        key=lambda rule: rule.priority))
    (redirect,) = [a["redirect"] for a in listeners["HTTP"][1]["defaultActions"] if a["type"] == "redirect"]
    return Balancer(address, domain, forward["targetGroupArn"], rules, tuple(groups), redirect)


# --- HAProxy's configuration -----------------------------------------------------------------


def backend_name(target_group: str) -> str:
    """HAProxy's backend of a target group, by its name (the last part of the plan's ARN, the name
    the group has in the lab's AWS)."""
    return "tg_" + re.sub(r"[^A-Za-z0-9_]", "_", target_group.rsplit("/", 1)[-1])


def _path_regex(patterns: tuple[str, ...]) -> str:
    """An ALB path pattern (`*` any characters, `?` one) as an anchored regular expression."""
    return "|".join("^" + re.escape(p).replace(r"\*", ".*").replace(r"\?", ".") + "$" for p in patterns)


def _status_match(matcher: str) -> str:
    """An ALB matcher ("200", "200,302", "200-299") as HAProxy's status regex."""
    codes = []
    for part in matcher.split(","):
        low, _, high = part.strip().partition("-")
        codes += [str(c) for c in range(int(low), int(high or low) + 1)]
    return "^(" + "|".join(codes) + ")$"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _action(rule: Rule) -> str:
    action = rule.action
    if action["type"] == "fixed-response":
        fixed = action["fixedResponse"]
        return (f"http-request return status {fixed['statusCode']} content-type {_quote(fixed.get('contentType', 'text/plain'))} "
                f"string {_quote(fixed.get('messageBody', ''))} if rule{rule.priority}")
    if action["type"] == "forward":
        return f"use_backend {backend_name(action['targetGroupArn'])} if rule{rule.priority}"
    raise hosts.LabError(f"listener rule {rule.priority}: action {action['type']} is not stood in by the lab")


def config(balancer: Balancer, certificate: Path, stats_socket: Path) -> str:
    """haproxy.cfg of the stand-in."""
    redirect = balancer.redirect
    code = redirect.get("statusCode", "HTTP_301").removeprefix("HTTP_")
    if redirect.get("port", str(HTTPS_PORT)) != str(HTTPS_PORT):
        raise hosts.LabError(f"the HTTP listener redirects to port {redirect['port']}; the lab stands in {HTTPS_PORT} only")
    lines = [
        "global",
        f"    stats socket {stats_socket} mode 600 level admin",
        "    ssl-default-bind-options ssl-min-ver TLSv1.2",
        "defaults",
        "    mode http",
        "    timeout connect 5s",
        f"    timeout client {IDLE_TIMEOUT_S}s",
        f"    timeout server {IDLE_TIMEOUT_S}s",
        f"    timeout http-keep-alive {IDLE_TIMEOUT_S}s",
        "frontend http",
        f"    bind {balancer.address}:{HTTP_PORT}",
        f"    http-request redirect scheme {redirect.get('protocol', 'HTTPS').lower()} code {code}",
        "frontend https",
        f"    bind {balancer.address}:{HTTPS_PORT} ssl crt {certificate}",
        "    option forwardfor",
        "    http-request set-header X-Forwarded-Proto https",
        f"    http-request set-header X-Forwarded-Port {HTTPS_PORT}",
    ]
    for rule in balancer.rules:
        lines += [f"    acl rule{rule.priority} path -m reg {_path_regex(rule.paths)}", f"    {_action(rule)}"]
    lines.append(f"    default_backend {backend_name(balancer.default_group)}")
    for group in balancer.groups:
        health = group.health
        check_port = "" if health.port == "traffic-port" else f" port {health.port}"
        lines += [
            f"backend {backend_name(group.name)}",
            "    balance roundrobin",
            "    option httpchk",
            f"    http-check send meth GET uri {health.path} ver HTTP/1.1 hdr Host {balancer.domain}",
            f"    http-check expect rstatus {_status_match(health.matcher)}",
            f"    timeout check {health.timeout_s}s",
            f"    default-server check inter {health.interval_s}s rise {health.healthy_threshold} "
            f"fall {health.unhealthy_threshold}{check_port}",
            *[f"    server {node} {address}:{port}" for node, address, port in group.members],
            *[f"    server spare-{slot} 127.0.0.1:{HTTP_PORT} disabled" for slot in range(1, SPARE_SLOTS + 1)],
        ]
    return "\n".join(lines) + "\n"


# --- the lab CA and the listener's certificate -----------------------------------------------


def ca_certificate() -> Path:
    """The lab CA's certificate (made once, kept with the image): what lab clients and hosts trust."""
    directory = cache_dir() / "lb-ca"
    cert, key = directory / "photostack-lab-ca.crt", directory / "photostack-lab-ca.key"
    if not cert.exists():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        hosts.run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", str(key), "-out", str(cert), "-days", str(CA_DAYS), "-subj", "/CN=photostack lab CA")
    return cert


def issue_certificate(directory: Path, names: list[str], addresses: list[str]) -> Path:
    """A server certificate and key (one PEM, as HAProxy reads it) for `names` and `addresses`,
    signed by the lab CA; the certificate alone is `server.crt` beside it."""
    ca = ca_certificate()
    key, request, cert, pem = (directory / n for n in ("server.key", "server.csr", "server.crt", "server.pem"))
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName=" + ",".join([f"DNS:{n}" for n in names] + [f"IP:{a}" for a in addresses]) + "\n")
    hosts.run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
              "-keyout", str(key), "-out", str(request), "-subj", f"/CN={names[0]}")
    hosts.run("openssl", "x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca.with_suffix(".key")),
              "-CAcreateserial", "-out", str(cert), "-days", "30", "-extfile", str(extensions))
    pem.write_text(cert.read_text() + key.read_text())
    pem.chmod(0o600)
    return pem


# --- life cycle ------------------------------------------------------------------------------


def stats_socket() -> Path:
    return hosts.host_dir(SERVICE) / "admin.sock"


def _run(service: str, spec: hosts.HostSpec, text: str, gateway: str, prefixlen: int, port: int) -> None:
    """Run HAProxy with config `text` in `spec`'s own namespace on the bridge, in the lab cgroup
    `service`, until the lab goes down; returns once it listens on `port`."""
    directory = hosts.host_dir(service)
    hosts.connect_namespace(spec, gateway, prefixlen)
    cfg = directory / "haproxy.cfg"
    cfg.write_text(text)
    hosts.run("haproxy", "-c", "-q", "-f", str(cfg))
    log = (directory / "haproxy.log").open("ab")
    hosts.spawn_in_cgroup(service, ["ip", "netns", "exec", spec.netns, "haproxy", "-db", "-f", str(cfg)],
                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    if not hosts.wait_port(spec.address, port, START_TIMEOUT_S):
        raise hosts.LabError(f"HAProxy ({service}) did not listen on {spec.address}:{port}; see {directory / 'haproxy.log'}")


def _directory(service: str) -> Path:
    directory = hosts.host_dir(service)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


def start(balancer: Balancer, gateway: str, prefixlen: int) -> None:
    """Run the ALB stand-in for `balancer` until the lab goes down."""
    certificate = issue_certificate(_directory(SERVICE), [balancer.domain], [balancer.address])
    _run(SERVICE, hosts.HostSpec(NAME, balancer.address, VETH_INDEX), config(balancer, certificate, stats_socket()),
         gateway, prefixlen, HTTPS_PORT)


def aws_tls_names(region: str, buckets: list[str]) -> list[str]:
    """The S3 host names (regional, and virtual-hosted per bucket) the HTTPS endpoint answers."""
    regional = f"s3.{region}.amazonaws.com"
    return [regional, *(f"{bucket}.{regional}" for bucket in buckets)]


def start_aws_tls(address: str, names: list[str], upstream: str, gateway: str, prefixlen: int) -> None:
    """Run the lab AWS API's HTTPS endpoint at `address` for `names`, forwarding to `upstream`
    (host:port of the lab's AWS), until the lab goes down."""
    certificate = issue_certificate(_directory(AWS_TLS_SERVICE), names, [address])
    text = "\n".join([
        "defaults",
        "    mode http",
        "    timeout connect 5s",
        f"    timeout client {IDLE_TIMEOUT_S}s",
        f"    timeout server {IDLE_TIMEOUT_S}s",
        "frontend aws",
        f"    bind {address}:{HTTPS_PORT} ssl crt {certificate}",
        "    default_backend lab_aws",
        "backend lab_aws",
        f"    server aws {upstream}",
    ]) + "\n"
    _run(AWS_TLS_SERVICE, hosts.HostSpec(AWS_TLS_NAME, address, AWS_TLS_VETH_INDEX), text, gateway, prefixlen, HTTPS_PORT)


def server_states() -> dict[str, str]:
    """Each target's health as the stand-in sees it now: node → "UP", "DOWN", "MAINT", ...
    (HAProxy's `show stat` over its admin socket)."""
    deadline = time.monotonic() + STATS_TIMEOUT_S
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as client:
                client.settimeout(STATS_TIMEOUT_S)
                client.connect(str(stats_socket()))
                client.sendall(b"show stat\n")
                data = b""
                while chunk := client.recv(65536):
                    data += chunk
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    states = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("svname") not in ("FRONTEND", "BACKEND", None) and row.get("pxname", "").startswith("tg_"):
            states[row["svname"]] = row["status"].split()[0]
    return states

