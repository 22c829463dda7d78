"""The offline plan as text: the resource tree (type, name, key inputs), then counts per type.

Deterministic (children sorted by type and name, mock ids derived from names) so a snapshot of it
turns every topology change into a reviewable diff. Secret values print as `[secret]`.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

from infra.offline_plan import Plan, PlannedResource, is_secret

SECRET = "[secret]"

# The inputs worth reading in a plan, per resource type (dotted paths into the inputs).
KEY_INPUTS: dict[str, tuple[str, ...]] = {
    "aws:ec2/vpc:Vpc": ("cidrBlock",),
    "aws:ec2/subnet:Subnet": ("availabilityZone", "cidrBlock"),
    "aws:ec2/route:Route": ("destinationCidrBlock",),
    "aws:ec2/natGateway:NatGateway": ("subnetId",),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": ("ipProtocol", "fromPort", "cidrIpv4", "referencedSecurityGroupId"),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": ("ipProtocol", "fromPort", "cidrIpv4", "referencedSecurityGroupId"),
    "aws:ec2/launchTemplate:LaunchTemplate": ("imageId", "instanceType", "metadataOptions.httpTokens"),
    "aws:ec2/instance:Instance": ("subnetId", "tags.photostack:role"),
    "aws:ebs/volume:Volume": ("availabilityZone", "size", "type", "encrypted"),
    "aws:ssm/parameter:Parameter": ("name", "type", "value"),
    "aws:lb/loadBalancer:LoadBalancer": ("loadBalancerType", "internal"),
    "aws:lb/targetGroup:TargetGroup": ("port", "protocol", "healthCheck.path"),
    "aws:lb/listener:Listener": ("port", "protocol", "sslPolicy"),
    "aws:lb/targetGroupAttachment:TargetGroupAttachment": ("targetId",),
    "aws:route53/record:Record": ("name", "type"),
    "aws:acm/certificate:Certificate": ("domainName", "validationMethod"),
    "aws:s3/bucketObjectv2:BucketObjectv2": ("key",),
    "aws:s3/bucket:Bucket": ("bucket",),
    "aws:s3/bucketVersioning:BucketVersioning": ("versioningConfiguration.status",),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "rules.0.applyServerSideEncryptionByDefault.sseAlgorithm",),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": ("rules.0.noncurrentVersionExpiration.noncurrentDays",),
    "aws:dlm/lifecyclePolicy:LifecyclePolicy": ("state", "policyDetails.targetTags.photostack:snapshots",
                                                 "policyDetails.schedules.0.retainRule.count"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("metricName",),
    "aws:kms/key:Key": ("enableKeyRotation",),
    "aws:sns/topic:Topic": ("kmsMasterKeyId",),
    "aws:sns/topicSubscription:TopicSubscription": ("protocol", "endpoint"),
    "pagerduty:index/service:Service": ("name",),
    "pagerduty:index/serviceIntegration:ServiceIntegration": ("type", "vendor"),
    "sentry:index/sentryProject:SentryProject": ("organization", "slug"),
    "pulumi-python:dynamic:Resource": ("name", "path", "token"),
}


def _lookup(inputs: dict[str, Any], path: str) -> Any:
    value: Any = inputs
    for part in path.split("."):
        if is_secret(value):
            return value
        if isinstance(value, list) and part.isdigit():  # e.g. rules.0.…
            value = value[int(part)] if int(part) < len(value) else None
            continue
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _format(value: Any) -> str:
    if is_secret(value):
        return SECRET
    if isinstance(value, str):
        return value
    return json.dumps(_integral(value), sort_keys=True, separators=(",", ":"))


def _integral(value: Any) -> Any:
    """Pulumi passes every number as a float: show 80, not 80.0 (ports, sizes, counts)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def _natural(text: str) -> list[object]:
    # app-2 before app-10.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def describe(resource: PlannedResource) -> str:
    """One line: type, name and key inputs."""
    parts = [resource.type, resource.name]
    for path in KEY_INPUTS.get(resource.type, ()):
        value = _lookup(resource.inputs, path)
        if value is not None:
            parts.append(f"{path}={_format(value)}")
    return " ".join(parts)


def render_plan(plan: Plan) -> str:
    """The whole plan: header, resource tree, counts per type."""
    children: dict[str, list[PlannedResource]] = defaultdict(list)
    urns = {r.urn for r in plan.resources}
    for resource in plan.resources:
        children[resource.parent if resource.parent in urns else ""].append(resource)
    lines = [f"photostack {plan.stack}: offline plan (Pulumi mocks, nothing contacted)", ""]

    def walk(parent: str, depth: int) -> None:
        for resource in sorted(children[parent], key=lambda r: (r.type, _natural(r.name))):
            lines.append("  " * depth + describe(resource))
            walk(resource.urn, depth + 1)

    walk("", 0)
    lines += ["", "Resources by type:"]
    counts = plan.counts()
    for type_, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"{count:6d}  {type_}")
    lines.append(f"{sum(counts.values()):6d}  total")
    return "\n".join(lines) + "\n"
