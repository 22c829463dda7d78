"""Security groups on lab hosts: each host's network namespace filters its traffic as its
instance's security groups do on AWS, read from the plan (nothing restated here).

AWS's rules, as the lab applies them (iptables in the host's own namespace, in chains of their own
so a drill's faults still go first):
- stateful: a connection a rule let through is answered both ways;
- ingress: only what an ingress rule of one of the instance's groups allows (protocol, port
  range, from a CIDR or from members of a referenced group);
- egress: only what an egress rule allows. The Pulumi provider removes AWS's default allow-all
  egress rule of a new group, so a group's egress is exactly its egress rules;
- the instance metadata service (169.254.169.254) is never filtered.
An instance's groups are its launch template's `vpcSecurityGroupIds` (the program puts them there).

What stands for what in the lab:
- the lab gateway (the bridge's address) is the VPC router and, behind it, everything outside the
  VPC: the registries' relays and the AWS APIs, which EC2 hosts reach over HTTPS. So traffic to
  the gateway is allowed where an egress rule allows TCP 443 to that place's CIDR (0.0.0.0/0),
  and the lab's ports there (its AWS API's plain HTTP, the relays) count as that HTTPS. The
  gateway is also the operator's machine (an admin CIDR): what it opens to hosts is not filtered
  (on AWS the operator reaches hosts only through the bastion; `ops` does here too);
- the load balancer stand-in is the one member of the load balancer's group.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Any

from infra.offline_plan import Plan, reveal
from lab import hosts

INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
METADATA = "169.254.169.254"
CHAIN_IN, CHAIN_OUT = f"{hosts.PREFIX.upper()}-SG-IN", f"{hosts.PREFIX.upper()}-SG-OUT"


@dataclass(frozen=True)
class Rule:
    """One security group rule: traffic `inbound` (or out) of `protocol` ("tcp", "udp" or "-1":
    all) on ports from_port..to_port, to or from `cidr` or the members of `group`."""

    group: str
    inbound: bool
    protocol: str
    from_port: int
    to_port: int
    cidr: str | None
    referenced: str | None


def _id(resource_name: str) -> str:
    return f"{resource_name}-id"  # the plan's resource ids (infra/offline_plan.py's mocks)


def _match(rule: Rule) -> list[str]:
    if rule.protocol in ("-1", "all"):
        return []
    match = ["-p", rule.protocol]
    if rule.protocol in ("tcp", "udp"):
        match += ["--dport", str(rule.from_port) if rule.from_port == rule.to_port else f"{rule.from_port}:{rule.to_port}"]
    return match


@dataclass(frozen=True)
class SecurityGroups:
    """The plan's security groups as the lab applies them: every rule, each node's groups, the
    load balancer's groups, and where the gateway and the load balancer stand-in are. Plain data,
    so the lab's AWS process can apply it to hosts it launches (lab/ec2_hosts.py)."""

    rules: tuple[Rule, ...]
    groups: dict[str, tuple[str, ...]]  # node → its groups
    balancer_groups: tuple[str, ...]
    gateway: str
    balancer: str

    @classmethod
    def from_plan(cls, plan: Plan, gateway: str, balancer: str) -> SecurityGroups:
        found = []
        for kind, inbound in ((INGRESS, True), (EGRESS, False)):
            for resource in plan.of_type(kind):
                args = reveal(resource.inputs)
                found.append(Rule(args["securityGroupId"], inbound, str(args.get("ipProtocol", "-1")),
                                  int(args.get("fromPort") or 0), int(args.get("toPort") or 0),
                                  args.get("cidrIpv4"), args.get("referencedSecurityGroupId")))
        templates = {_id(r.name): reveal(r.inputs).get("vpcSecurityGroupIds") or [] for r in plan.of_type(LAUNCH_TEMPLATE)}
        groups = {}
        for resource in plan.of_type(INSTANCE):
            args = reveal(resource.inputs)
            template = (args.get("launchTemplate") or {}).get("id")
            groups[args["tags"]["photostack:node"]] = tuple(args.get("vpcSecurityGroupIds") or templates.get(template, []))
        balancers = tuple(g for r in plan.of_type(LOAD_BALANCER) for g in reveal(r.inputs).get("securityGroups") or [])
        return cls(tuple(found), groups, balancers, gateway, balancer)

    def to_json(self) -> dict[str, Any]:
        return {"rules": [asdict(r) for r in self.rules], "groups": {k: list(v) for k, v in self.groups.items()},
                "balancer_groups": list(self.balancer_groups), "gateway": self.gateway, "balancer": self.balancer}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SecurityGroups:
        return cls(tuple(Rule(**r) for r in data["rules"]), {k: tuple(v) for k, v in data["groups"].items()},
                   tuple(data["balancer_groups"]), data["gateway"], data["balancer"])

    def host_rules(self, node: str, addresses: dict[str, str]) -> list[list[str]]:
        """The iptables rules (arguments after `-A`) of `node`'s two chains: its groups' rules,
        with each referenced group's members at their current `addresses` (node → address)."""
        mine = set(self.groups.get(node, ()))
        members: dict[str, list[str]] = {}
        for other, groups in self.groups.items():
            for group in groups:
                if other in addresses:
                    members.setdefault(group, []).append(addresses[other])
        for group in self.balancer_groups:
            members.setdefault(group, []).append(self.balancer)
        comment = ["-m", "comment", "--comment", hosts.IPTABLES_COMMENT]
        stateful = ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]
        found = [[CHAIN_IN, *stateful, *comment], [CHAIN_IN, "-i", "lo", "-j", "ACCEPT", *comment],
                 [CHAIN_IN, "-s", self.gateway, "-j", "ACCEPT", *comment],
                 [CHAIN_OUT, *stateful, *comment], [CHAIN_OUT, "-o", "lo", "-j", "ACCEPT", *comment],
                 [CHAIN_OUT, "-d", METADATA, "-j", "ACCEPT", *comment]]
        for rule in self.rules:
            if rule.group not in mine:
                continue
            chain, side = (CHAIN_IN, "-s") if rule.inbound else (CHAIN_OUT, "-d")
            peers = members.get(rule.referenced, []) if rule.referenced else [rule.cidr]
            for peer in peers:
                found.append([chain, side, peer, *_match(rule), "-j", "ACCEPT", *comment])
            if not rule.inbound and rule.cidr and rule.protocol == "tcp" and rule.from_port <= 443 <= rule.to_port \
                    and ipaddress.ip_address(self.gateway) in ipaddress.ip_network(rule.cidr):
                # HTTPS out there: AWS's APIs and the registries, behind the lab gateway.
                found.append([CHAIN_OUT, "-d", self.gateway, "-p", "tcp", "-j", "ACCEPT", *comment])
        return found + [[CHAIN_IN, "-j", "DROP", *comment], [CHAIN_OUT, "-j", "DROP", *comment]]

    def protect(self, specs: list[hosts.HostSpec]) -> None:
        """Apply each host's rules in its namespace, every referenced group at the addresses of
        `specs` (the hosts there are now: a replacement's new address is admitted where its
        group is)."""
        addresses = {spec.name: spec.address for spec in specs}
        present = set(hosts.lab_namespaces())  # one `ip netns list`, not one per host
        for spec in specs:
            if spec.netns in present:
                apply(spec.netns, self.host_rules(spec.name, addresses))


def apply(netns: str, chain_rules: list[list[str]]) -> None:
    """Install `chain_rules` in the host's namespace, replacing what its chains held (so the
    members of referenced groups can follow hosts that come and go)."""
    def iptables(*args: str, check: bool = True) -> None:
        hosts.run("ip", "netns", "exec", netns, "iptables", "-w", *args, check=check)

    for chain, hook in ((CHAIN_IN, "INPUT"), (CHAIN_OUT, "OUTPUT")):
        iptables("-N", chain, check=False)  # exists already: kept, flushed below
        iptables("-F", chain)
        if hosts.run("ip", "netns", "exec", netns, "iptables", "-w", "-C", hook, "-j", chain, check=False).returncode:
            iptables("-A", hook, "-j", chain)
    for rule in chain_rules:
        iptables("-A", *rule)
