"""Stack config rules that span several keys, checked once the keys themselves are valid.

Each rule returns (key path under `photostack:`, problem) pairs, so every problem is reported at
once. The rules of one target kind only are that target's (infra/targets/aws_config.py,
infra/targets/onebox_config.py); the parser hands them in as `KindRules`.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.config_errors import show

if TYPE_CHECKING:
    from infra.config import StackConfig
    from infra.targets.kinds import KindRules

Problems = list[tuple[str, str]]

# Most addresses the admin ranges may open SSH to together: a /8.
MAX_ADMIN_ADDRESSES = 1 << 24


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


def zones(config: StackConfig, keys: dict[str, Any], providers: dict[str, Any], rules: KindRules) -> Problems:
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
    if rules.checks_aws_names or _explicit(keys, "availabilityZones") or _explicit(keys, "region"):
        problems += [("availabilityZones", why) for zone in dict.fromkeys(config.availability_zones)
                     if (why := zone_problem(zone, config.region))]
    return problems


def instance_types(config: StackConfig, keys: dict[str, Any], rules: KindRules) -> Problems:
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
        if rules.checks_aws_names or _explicit(keys, *place, "instanceType"):
            if why := instance_type_problem(section.instance_type):
                problems.append((".".join((*place, "instanceType")), why))
    return problems


def pingdom_paging(config: StackConfig) -> Problems:
    """With PagerDuty on, the Pingdom check pages through Pingdom's PagerDuty integration."""
    monitoring = config.monitoring
    if monitoring.pingdom and config.alerting.pagerduty and monitoring.pingdom_pagerduty_integration_id is None:
        return [("monitoring.pingdomPagerdutyIntegrationId",
                 "missing: the Pingdom check would not page; add the PagerDuty integration in Pingdom "
                 "(Integrations → Add integration → PagerDuty) and set its id here")]
    return []


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


def cross_checks(config: StackConfig, keys: dict[str, Any], providers: dict[str, Any], rules: KindRules) -> Problems:
    """Every cross-key rule that applies to the stack: the shared ones, then its target's own."""
    return (zones(config, keys, providers, rules) + instance_types(config, keys, rules) + role_overrides(config)
            + pingdom_paging(config) + rules.problems(config))
