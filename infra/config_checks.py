"""Stack config rules that span several keys, checked once the keys themselves are valid.

Each rule returns (key path under `photostack:`, problem) pairs, so every problem is reported at
once. AWS rules follow AWS's documented limits: a zone belongs to its region, subnets are /28 or
larger, an ALB's subnets /27 or larger, five addresses of every subnet are AWS's own.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.config_errors import show

if TYPE_CHECKING:
    from infra.config import StackConfig

Problems = list[tuple[str, str]]

# Most addresses the admin ranges may open SSH to together: a /8.
MAX_ADMIN_ADDRESSES = 1 << 24
SUBNET_MIN_PREFIX = 28  # AWS: the smallest subnet is a /28
ALB_SUBNET_MAX_PREFIX = 27  # AWS: an ALB's subnets need a /27 and 8 free addresses
AWS_RESERVED_PER_SUBNET = 5
# One-box ports the roles use whatever the config says (roles/rabbitmq/defaults.yaml, Erlang's epmd).
FIXED_ONEBOX_PORTS = {"epmd": 4369, "rabbitmq distribution": 25672}


def admin_cidrs_problem(cidrs: list[str]) -> str | None:
    """Why these SSH admin ranges cannot be used, or None: not IPv4 networks, repeated, or too wide."""
    networks: list[ipaddress.IPv4Network] = []
    for cidr in cidrs:
        try:
            loose = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return f"{show(cidr)} is not an IPv4 network range such as 203.0.113.0/24"
        if loose.version != 4:
            return f"{cidr} is IPv6; the bastion's security group and VPC are IPv4 only"
        if "/" not in cidr:
            return f"{cidr} has no prefix length; write {loose} for one address"
        try:
            ipaddress.ip_network(cidr)
        except ValueError:
            return f"{cidr} has host bits set; write {loose} (or {cidr.split('/')[0]}/32 for one address)"
        if loose.prefixlen == 0:
            return f"{cidr} would open SSH to the whole internet; list your own networks"
        for other in networks:
            if loose == other:
                return f"{cidr} is listed twice"
            if loose.overlaps(other):
                return f"{cidr} overlaps {other}; list each network once"
        networks.append(loose)
    total = sum(n.num_addresses for n in ipaddress.collapse_addresses(networks))
    if total > MAX_ADMIN_ADDRESSES:
        return (f"together these ranges open SSH to {total:,} addresses ({100 * total / 2**32:.1f}% of the "
                "IPv4 internet); list your own networks (at most a /8 in all)")
    return None


def subnet_prefix(vpc_cidr: str, zones: int) -> int:
    """Prefix of each subnet: the fewest equal slices of the VPC giving every zone a public and a private one."""
    return ipaddress.ip_network(vpc_cidr).prefixlen + max(1, (2 * zones - 1).bit_length())


@cache
def provider_keys(package: str | None) -> frozenset[str] | None:
    """Config keys a provider reads, from its SDK package's `config/vars.py` (read as text:
    importing costs ~1 s); None when the package is not installed."""
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(next(iter(spec.submodule_search_locations))) / "config" / "vars.py"
    if not source.is_file():
        return None
    return frozenset(re.findall(r"__config__\.(?:get|require)\w*\('(\w+)'", source.read_text()))


def _explicit(keys: dict[str, Any], *path: str) -> bool:
    node: Any = keys
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def zones(config: StackConfig, keys: dict[str, Any], providers: dict[str, Any]) -> Problems:
    """Zones: each once, each in the region; the region agrees with the AWS provider's."""
    from infra.aws_names import zone_problem

    problems: Problems = []
    aws_region = providers.get("aws:region")
    if aws_region is not None and aws_region != config.region:
        problems.append(("region", f"'{config.region}' disagrees with aws:region {show(str(aws_region))}; "
                                   "set both to the same region"))
    seen: set[str] = set()
    for zone in config.availability_zones:
        if zone in seen:
            problems.append(("availabilityZones", f"'{zone}' is listed twice"))
        seen.add(zone)
    if config.target == "aws" or _explicit(keys, "availabilityZones") or _explicit(keys, "region"):
        problems += [("availabilityZones", why) for zone in dict.fromkeys(config.availability_zones)
                     if (why := zone_problem(zone, config.region))]
    return problems


def aws_shape(config: StackConfig) -> Problems:
    """What an AWS stack needs: a pinned image, two zones, a web tier, a zone per replica."""
    problems: Problems = []
    if config.ami is None:
        problems.append(("ami", "required on AWS (an Ubuntu 24.04 image id; see docs/aws.md \"The image, pinned\")"))
    distinct = len(set(config.availability_zones))
    if distinct < 2:
        problems.append(("availabilityZones", "needs at least 2 distinct zones on AWS"))
    for tier in ("nginx", "app"):
        if getattr(config.fleets, tier).count < 1:
            problems.append((f"fleets.{tier}.count", "must be at least 1 on AWS"))
    if distinct >= 2 and config.postgres.replicas_per_shard > distinct - 1:
        problems.append(("postgres.replicasPerShard", f"{config.postgres.replicas_per_shard} replicas need "
                         f"{config.postgres.replicas_per_shard + 1} availability zones (each replica sits in "
                         f"another zone than its primary); {distinct} given"))
    return problems


def instance_types(config: StackConfig, keys: dict[str, Any]) -> Problems:
    """Every instance type is a real amd64 EC2 type (checked on AWS, and wherever one is given)."""
    from infra.aws_names import instance_type_problem

    problems: Problems = []
    places = [("fleets", tier) for tier in ("nginx", "app", "worker")] + [
        ("postgres",), ("redis",), ("memcached",), ("rabbitmq",)
    ]
    for place in places:
        section: Any = config
        for part in place:
            section = getattr(section, part)
        if config.target == "aws" or _explicit(keys, *place, "instanceType"):
            if why := instance_type_problem(section.instance_type):
                problems.append((".".join((*place, "instanceType")), why))
    return problems


def network(config: StackConfig) -> Problems:
    """The VPC holds a public and a private subnet per zone, each large enough for what it holds."""
    from infra.topology import nodes

    zone_count = len(config.availability_zones)
    prefix = subnet_prefix(config.vpc_cidr, zone_count)
    if prefix > SUBNET_MIN_PREFIX:
        return [("vpcCidr", f"{config.vpc_cidr} is too small for {zone_count} public and {zone_count} private "
                            f"subnets (each would be a /{prefix}; AWS's smallest is a /{SUBNET_MIN_PREFIX})")]
    problems: Problems = []
    usable = (1 << (32 - prefix)) - AWS_RESERVED_PER_SUBNET
    if prefix > ALB_SUBNET_MAX_PREFIX:
        problems.append(("vpcCidr", f"{config.vpc_cidr} gives /{prefix} public subnets; the load balancer "
                                    f"needs /{ALB_SUBNET_MAX_PREFIX} or larger"))
    per_zone = Counter(node.az for node in nodes(config))
    zone, hosts = max(per_zone.items(), key=lambda item: item[1])
    if hosts > usable:
        problems.append(("vpcCidr", f"{config.vpc_cidr} gives /{prefix} private subnets of {usable} usable "
                                    f"addresses; zone {zone} needs {hosts} hosts"))
    return problems


def hosted_zone(config: StackConfig) -> Problems:
    """The hosted zone is the domain or one of its parents, and a real zone (not a top-level domain)."""
    if config.hosted_zone is not None:
        zone, domain = config.hosted_zone.lower(), config.domain.lower()
        if domain != zone and not domain.endswith("." + zone):
            return [("hostedZone", f"'{config.hosted_zone}' is not a suffix of the domain '{config.domain}'")]
        return []
    parent = config.domain.partition(".")[2]
    if "." not in parent:
        return [("domain", f"the hosted zone defaults to the domain's parent '{parent}', a top-level domain; "
                           f"set {'photostack'}:hostedZone (e.g. to '{config.domain}')")]
    return []


def pingdom_paging(config: StackConfig) -> Problems:
    """With PagerDuty on, the Pingdom check pages through Pingdom's PagerDuty integration."""
    monitoring = config.monitoring
    if monitoring.pingdom and config.alerting.pagerduty and monitoring.pingdom_pagerduty_integration_id is None:
        return [("monitoring.pingdomPagerdutyIntegrationId",
                 "missing: the Pingdom check would not page; add the PagerDuty integration in Pingdom "
                 "(Integrations → Add integration → PagerDuty) and set its id here")]
    return []


def onebox_ports(config: StackConfig) -> Problems:
    """One-box services each get their own port range on the one address: within 1024–65535, no overlaps."""
    box, pg = config.onebox, config.postgres
    ranges = [
        ("sshPort", "sshd", box.ssh_port, 1),
        ("httpPort", "nginx", box.http_port, 1),
        ("appBasePort", "gunicorn", box.app_base_port, config.fleets.app.count),
        ("postgresBasePort", "postgres", box.postgres_base_port, pg.physical_shards * (pg.replicas_per_shard + 1)),
        ("pgbouncerPort", "pgbouncer", box.pgbouncer_port, 1),
        ("redisBasePort", "redis", box.redis_base_port, config.redis.replicas + 1),
        ("memcachedBasePort", "memcached", box.memcached_base_port, config.memcached.count),
        ("rabbitmqPort", "rabbitmq", box.rabbitmq_port, 1),
        ("muninNodePort", "munin-node", box.munin_node_port, 1),
    ]
    problems: Problems = []
    placed: list[tuple[str, str, int, int]] = [(f"fixed port {p}", name, p, p) for name, p in FIXED_ONEBOX_PORTS.items()]
    for key, name, first, count in ranges:
        if count < 1:
            continue
        last = first + count - 1
        span = f"{first}" if count == 1 else f"{first}–{last}"
        if last > 65535:
            problems.append((f"onebox.{key}", f"{name} needs ports {span}, beyond 65535"))
            continue
        for other_key, other_name, other_first, other_last in placed:
            if first <= other_last and other_first <= last:
                other_span = f"{other_first}" if other_first == other_last else f"{other_first}–{other_last}"
                where = other_key if other_key.startswith("fixed") else f"photostack:onebox.{other_key}"
                problems.append((f"onebox.{key}", f"{name} port(s) {span} overlap {other_name} {other_span} ({where})"))
                break
        placed.append((key, name, first, last))
    return problems


# The one-box runs every node on this machine: bounds far above the shipped one-box, far below a typo.
ONEBOX_MAX_NODES_PER_ROLE = 64
ONEBOX_MAX_PROCESSES = 64


def onebox_size(config: StackConfig) -> Problems:
    """What one machine can hold: bounded node and process counts, caches within its memory."""
    problems: Problems = []
    pg = config.postgres
    counts = [(f"fleets.{tier}.count", getattr(config.fleets, tier).count) for tier in ("nginx", "app", "worker")]
    counts += [("postgres.physicalShards", pg.physical_shards * (pg.replicas_per_shard + 1)),
               ("memcached.count", config.memcached.count), ("redis.replicas", config.redis.replicas + 1)]
    problems += [(key, f"{count} nodes of one role on the one-box (one machine); at most {ONEBOX_MAX_NODES_PER_ROLE}")
                 for key, count in counts if count > ONEBOX_MAX_NODES_PER_ROLE]
    problems += [(f"fleets.{tier}.processes", f"{getattr(config.fleets, tier).processes} processes per node on the "
                  f"one-box; at most {ONEBOX_MAX_PROCESSES}")
                 for tier in ("nginx", "app", "worker") if getattr(config.fleets, tier).processes > ONEBOX_MAX_PROCESSES]
    memory_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1 << 20)
    caches_mb = (config.redis.replicas + 1) * config.redis.maxmemory_mb + config.memcached.count * config.memcached.memory_mb
    if caches_mb > memory_mb:
        problems.append(("redis.maxmemoryMb", f"Redis and Memcached would take {caches_mb} MiB on the one-box; "
                                              f"this machine has {memory_mb} MiB"))
    return problems


def role_overrides(config: StackConfig) -> Problems:
    """`roles.<role>.<key>`: a role that exists, a setting it declares, a value of that setting's kind."""
    from infra import role_settings

    problems: Problems = []
    for role, settings in config.roles.items():
        declared = role_settings.declared(role)
        if declared is None:
            problems.append((f"roles.{role}", f"no such role (roles: {', '.join(role_settings.known_roles())})"))
            continue
        for key, value in settings.items():
            if key not in declared:
                problems.append((f"roles.{role}.{key}", f"not a setting of role {role} (see roles/{role}/defaults.yaml)"))
            elif why := role_settings.kind_problem(value, declared[key]):
                problems.append((f"roles.{role}.{key}", why))
    return problems


def cross_checks(config: StackConfig, keys: dict[str, Any], providers: dict[str, Any]) -> Problems:
    """Every cross-key rule that applies to the stack's target."""
    problems = (zones(config, keys, providers) + instance_types(config, keys) + role_overrides(config)
                + pingdom_paging(config))
    if config.target == "aws":
        problems += aws_shape(config) + network(config) + hosted_zone(config)
    else:
        problems += onebox_ports(config) + onebox_size(config)
    return problems
