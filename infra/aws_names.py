"""AWS names checked offline: regions, their availability zones, EC2 instance types.

Regions and instance types come from the data botocore ships (`endpoints.json`, the EC2 service
model's `InstanceType` enum), so they follow the pinned boto3 without a network call. Zone
letters are not in botocore: `ZONE_LETTERS` lists each region's standard zones (AWS's "Regions
and Zones" page); a region missing from it has a, b and c, which every region has.
"""

from __future__ import annotations

import re
from functools import cache

# Standard availability zone letters per region, where they are not just a, b, c.
ZONE_LETTERS = {
    "us-east-1": "abcdef",
    "us-west-1": "abc",  # an account sees two of them
    "us-west-2": "abcd",
    "ap-northeast-1": "abcd",  # b only for older accounts
    "ap-northeast-2": "abcd",
    "ca-central-1": "abd",
    "cn-north-1": "abd",
}
DEFAULT_ZONE_LETTERS = "abc"

# The image is Ubuntu amd64 (infra/fleet.py): Graviton (arm64) types cannot boot it. Their family
# names carry a `g` after the generation digit (m6g, c7gn, r8gd, t4g, x2gd, im4gn, is4gen, g5g) or are a1.
_ARM_FAMILY = re.compile(r"^(?:a1|[a-z]+\d+[a-z]*g[a-z]*(?:-[a-z]+)?)$")
# Mac and high-memory (u-) instances only run on dedicated hosts, which the program does not make.
_DEDICATED_HOST_FAMILY = re.compile(r"^(?:mac|u-)")


@cache
def _loader():
    import botocore.loaders  # ~50 ms: only when an AWS name is checked

    return botocore.loaders.create_loader()


@cache
def regions() -> frozenset[str]:
    """Every region botocore knows (all partitions: aws, aws-cn, aws-us-gov …)."""
    data = _loader().load_data("endpoints")
    return frozenset(region for partition in data["partitions"] for region in partition["regions"])


@cache
def instance_types() -> frozenset[str]:
    """Every EC2 instance type name of the pinned botocore's EC2 API model."""
    model = _loader().load_service_model("ec2", "service-2")
    return frozenset(model["shapes"]["InstanceType"]["enum"])


def zones(region: str) -> list[str]:
    """The standard availability zones of a region."""
    return [region + letter for letter in ZONE_LETTERS.get(region, DEFAULT_ZONE_LETTERS)]


def region_problem(region: str) -> str | None:
    """Why `region` is not an AWS region, or None."""
    if region in regions():
        return None
    return f"'{region}' is not an AWS region (e.g. us-east-1, eu-west-1)"


def zone_problem(zone: str, region: str) -> str | None:
    """Why `zone` is not an availability zone of `region`, or None."""
    if zone in zones(region):
        return None
    prefix = re.sub(r"[a-z]$", "", zone)
    if prefix != region and prefix in regions():
        return f"'{zone}' is in region {prefix}, not in {region}"
    return f"'{zone}' is not an availability zone of {region} ({', '.join(zones(region))})"


def instance_type_problem(name: str) -> str | None:
    """Why `name` cannot be used as this stack's instance type, or None."""
    if name not in instance_types():
        return f"'{name}' is not an EC2 instance type (e.g. t3.small, c5.large)"
    family = name.split(".")[0]
    if _DEDICATED_HOST_FAMILY.match(family):
        return f"'{name}' runs only on dedicated hosts, which this stack does not allocate"
    if _ARM_FAMILY.match(family):
        return f"'{name}' is an arm64 (Graviton) type; the stack's Ubuntu image is amd64"
    return None
