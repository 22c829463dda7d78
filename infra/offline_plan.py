"""The offline plan: run the Pulumi program under Pulumi's mocks and collect what it would create.

Nothing is contacted: the mocks answer every resource and lookup with deterministic values, and
secret config values are placeholders that the rendering shows as `[secret]`. Each run happens in
a fresh context (Pulumi keeps its runtime state in context variables), so plans can be made
repeatedly in one process (tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import hashlib
import ipaddress
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_pulumi_func

from infra.config import NAMESPACE, SECRET_KEYS, StackConfig
from infra.program import build

PROJECT = "photostack"
# Pulumi's wire marker of a secret value (what the mock monitor sees for secret inputs).
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"
# The canonical hosted zone id of ALBs in us-east-1 (AWS publishes one per region).
ALB_ZONE_ID = "Z35SXDOTRQ7X7K"
MOCK_ACCOUNT = "123456789012"


def placeholder_secret(name: str) -> str:
    """The mocked value of secret `name`: recognisable so tests can prove it never leaks."""
    return f"PLAN-SECRET-{name}-do-not-leak"


@dataclass
class PlannedResource:
    """One resource the program declares."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    """Input name to the URNs of the resources its value came from."""
    dependencies: list[str] = field(default_factory=list)
    """URNs of every resource it waits for (inputs and `depends_on`)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Resource options that decide replacement and deletion: ignore_changes, protect,
    retain_on_delete, delete_before_replace, replace_on_changes."""


@dataclass
class Plan:
    """Everything a stack's program declares, and its outputs."""

    stack: str
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    lookups: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Provider functions the program called (token, arguments), e.g. the AMI lookup."""

    def of_type(self, type_: str) -> list[PlannedResource]:
        """Resources of one type token."""
        return [r for r in self.resources if r.type == type_]

    def counts(self) -> Counter[str]:
        """Resources per type."""
        return Counter(r.type for r in self.resources)


def is_secret(value: Any) -> bool:
    """Whether a mocked input value is a Pulumi secret."""
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def reveal(value: Any) -> Any:
    """A mocked input with its secret wrappers removed (for assertions, never for printing)."""
    if is_secret(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


class PlanMocks(pulumi_mocks.Mocks):
    """Deterministic answers for every resource and lookup the program makes."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.inputs: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}
        self.subnet_cidrs: dict[str, str] = {}
        self.lookups: list[tuple[str, dict[str, Any]]] = []

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        resource_id = f"{args.name}-id"
        outputs = dict(args.inputs)
        outputs.setdefault("arn", f"arn:aws:mock:{self.region}::{args.typ}/{args.name}")
        computed = _COMPUTED.get(args.typ)
        if computed:
            outputs.update(computed(self, args, resource_id))
        self.inputs[(args.typ, args.name)] = (args.inputs, outputs)
        return resource_id, outputs

    def call(self, args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:
        self.lookups.append((args.token, dict(args.args)))
        if args.token == "aws:ec2/getAmi:getAmi":
            # The pinned image, as AWS answers a lookup by image id among Canonical's images.
            image = next(f["values"][0] for f in args.args["filters"] if f["name"] == "image-id")
            return {"id": image, "imageId": image, "ownerId": args.args["owners"][0]}
        if args.token == "aws:route53/getZone:getZone":
            return {"id": f"Z-{args.args['name']}", "zoneId": f"Z-{args.args['name']}", "name": args.args["name"]}
        if args.token == "pagerduty:index/getEscalationPolicy:getEscalationPolicy":
            return {"id": "PDEFAULT", "name": args.args["name"]}
        if args.token == "pagerduty:index/getVendor:getVendor":
            return {"id": "PVENDOR-" + re.sub(r"\W", "", args.args["name"]), "name": args.args["name"]}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": MOCK_ACCOUNT, "arn": f"arn:aws:iam::{MOCK_ACCOUNT}:user/plan", "id": MOCK_ACCOUNT, "userId": "PLAN"}
        return {}

    def subnet(self, args: pulumi_mocks.MockResourceArgs, resource_id: str) -> dict[str, Any]:
        self.subnet_cidrs[resource_id] = args.inputs["cidrBlock"]
        return {}

    def instance(self, args: pulumi_mocks.MockResourceArgs, resource_id: str) -> dict[str, Any]:
        network = ipaddress.ip_network(self.subnet_cidrs[args.inputs["subnetId"]])
        # A stable address inside the subnet, derived from the name (AWS keeps the first 4).
        offset = 4 + int(hashlib.sha256(args.name.encode()).hexdigest(), 16) % (network.num_addresses - 5)
        outputs = {"privateIp": str(network.network_address + offset)}
        if args.inputs.get("associatePublicIpAddress"):
            outputs["publicIp"] = f"198.51.100.{offset % 250 + 1}"
        return outputs


def _template_version(inputs: dict[str, Any]) -> int:
    """A launch template's latest version: AWS adds one whenever its inputs change, so a mocked
    version derived from the inputs differs between two plans exactly when they do."""
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
    return 1 + int(digest, 16) % 1000


def _certificate(_m: PlanMocks, args: pulumi_mocks.MockResourceArgs, _id: str) -> dict[str, Any]:
    domain = args.inputs["domainName"]
    return {
        "domainValidationOptions": [
            {
                "domainName": domain,
                "resourceRecordName": f"_mock.{domain}.",
                "resourceRecordType": "CNAME",
                "resourceRecordValue": "_mock.acm-validations.aws.",
            }
        ]
    }


_COMPUTED = {
    "aws:ec2/subnet:Subnet": PlanMocks.subnet,
    "aws:ssm/parameter:Parameter": lambda m, a, _i: {"arn": f"arn:aws:ssm:{m.region}:{MOCK_ACCOUNT}:parameter{a.inputs['name']}"},
    "aws:ec2/instance:Instance": PlanMocks.instance,
    "aws:ec2/launchTemplate:LaunchTemplate": lambda _m, a, _i: {"latestVersion": _template_version(a.inputs)},
    "aws:acm/certificate:Certificate": _certificate,
    "aws:acm/certificateValidation:CertificateValidation": lambda _m, a, _i: {"certificateArn": a.inputs["certificateArn"]},
    "aws:route53/record:Record": lambda _m, a, _i: {"fqdn": a.inputs["name"]},
    "aws:lb/loadBalancer:LoadBalancer": lambda m, a, _i: {
        "dnsName": f"{a.name}-mock.{m.region}.elb.amazonaws.com",
        "zoneId": ALB_ZONE_ID,
        "arnSuffix": f"app/{a.name}/mock",
    },
    "aws:lb/targetGroup:TargetGroup": lambda _m, a, _i: {"arnSuffix": f"targetgroup/{a.name}/mock"},
    # A bucket named in the program keeps its name (the backup bucket's); others get the engine's.
    "aws:s3/bucket:Bucket": lambda _m, a, _i: {"bucket": a.inputs.get("bucket") or f"{a.name}-mock"},
    "aws:iam/role:Role": lambda _m, a, _i: {"name": a.name},
    "aws:ec2/keyPair:KeyPair": lambda _m, a, _i: {"keyName": a.name},
    # Each integration has its own key: the Events v2 one (the hosts' routing key) or a vendor's.
    "pagerduty:index/serviceIntegration:ServiceIntegration": lambda _m, a, _i: {
        "integrationKey": placeholder_secret("pagerdutyCloudwatchKey" if a.inputs.get("vendor") else "pagerdutyRoutingKey")
    },
    "sentry:index/sentryKey:SentryKey": lambda _m, _a, _i: {"dsnPublic": placeholder_secret("sentryDsn")},
}


class PlanMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, also recording each resource's URN, parent and dependencies (tree, policies)."""

    def __init__(self, mocks: PlanMocks) -> None:
        super().__init__(mocks)
        self.registrations: list[tuple[str, str, str, str, bool, dict[str, list[str]], list[str], dict[str, Any]]] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        dependencies = {key: list(value.urns) for key, value in request.propertyDependencies.items()}
        options = {
            "ignore_changes": sorted(request.ignoreChanges),
            "protect": request.protect,
            "retain_on_delete": request.retainOnDelete,
            "delete_before_replace": request.deleteBeforeReplace,
            "replace_on_changes": sorted(request.replaceOnChanges),
        }
        self.registrations.append(
            (response.urn, request.parent, request.type, request.name, request.custom, dependencies,
             list(request.dependencies), options)
        )
        return response


def _secret_config(stack_config: StackConfig) -> dict[str, str]:
    return {f"{NAMESPACE}:{name}": placeholder_secret(name) for name in SECRET_KEYS if name in stack_config.secrets}


def _run(config: StackConfig, stack: str) -> Plan:
    mocks = PlanMocks(config.region)
    monitor = PlanMonitor(mocks)
    secret_config = _secret_config(config)
    set_all_config(secret_config, secret_keys=list(secret_config))
    # A loop of its own: set_mocks creates the root stack resource, whose futures bind to it.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi_mocks.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    outputs: dict[str, Any] = {}

    async def program() -> None:
        declared = build(config, stack)
        outputs.update(await pulumi.Output.from_input(declared).future())

    try:
        loop.run_until_complete(run_pulumi_func(program))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    resources = []
    for urn, parent, type_, name, custom, dependencies, waits_for, options in monitor.registrations:
        if type_ == "pulumi:pulumi:Stack":
            continue
        inputs, state = mocks.inputs.get((type_, name), ({}, {}))
        resources.append(PlannedResource(type_, name, urn, parent, custom, inputs, state, dependencies, waits_for, options))
    return Plan(stack, resources, outputs, mocks.lookups)


# The SDK makes tens of thousands of futures and Outputs per plan; with the default thresholds the
# cyclic GC rescans them again and again (over half the time of a 2,000-resource plan).
PLAN_GC_THRESHOLD = (100_000, 50, 100)


def run_plan(config: StackConfig, stack: str) -> Plan:
    """Run the program of `stack` under mocks; returns every declared resource and the outputs."""
    thresholds = gc.get_threshold()
    gc.set_threshold(*PLAN_GC_THRESHOLD)
    try:
        return contextvars.Context().run(_run, config, stack)
    finally:
        gc.set_threshold(*thresholds)
