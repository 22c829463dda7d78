"""The policies of the pack, as plain `pulumi_policy` policy objects.

`PolicyPack(...)` starts a gRPC server, so it lives only in `__main__.py`; tests and `ops plan`
call these policies' `validate` functions directly (see `infra/policy/evaluate.py`).
Resource policies read a resource's inputs; stack policies follow property dependencies to the
resources an input came from (a rule's security group, a public access block's bucket).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.inventory import TAG_ROLE, TAG_STACK
from infra.tagging import LOGIN_TAG, PASSWORD_LOGIN

INTERNET = ("0.0.0.0/0", "::/0")
# SSH and every data-tier port: never reachable from the internet.
PROTECTED_PORTS = {22: "SSH", 5432: "Postgres", 6432: "pgbouncer", 6379: "Redis", 11211: "Memcached", 5672: "RabbitMQ"}
DATA_GROUPS = ("postgres", "redis", "memcached", "rabbitmq")
# Who may open connections to a data group: the app and workers, and the group's own peers
# (replication, clustering); SSH from the bastion and munin polling are the only other flows.
DATA_CLIENTS = ("app", "worker")
ADMIN_FLOWS = {22: "bastion", 4949: "munin_master"}
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
LEGACY_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
VOLUME = "aws:ebs/volume:Volume"
LISTENERS = ("aws:lb/listener:Listener", "aws:alb/listener:Listener")
LISTENER_RULES = ("aws:lb/listenerRule:ListenerRule", "aws:alb/listenerRule:ListenerRule")
# The dashboards: operators only (the load balancer's login action, or nginx's password login), never the open site.
DASHBOARD_PATHS = ("/munin", "/wallboard")
LOGIN_ACTIONS = ("authenticate-oidc", "authenticate-cognito")
SSM_PARAMETER = "aws:ssm/parameter:Parameter"
BUCKET = "aws:s3/bucket:Bucket"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SNS_TOPIC = "aws:sns/topic:Topic"
DLM_POLICY = "aws:dlm/lifecyclePolicy:LifecyclePolicy"
BUCKET_ENCRYPTION = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                     "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
BUCKET_VERSIONING = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
# Buckets holding backups (infra/backups.py tags them with this role).
BACKUP_ROLE = "backups"
# Its policy cannot be changed and does not let AWS services (CloudWatch alarms among them) use
# it: they cannot publish to a topic encrypted with it, and nothing says so but the alarm history.
AWS_MANAGED_SNS_KEY = "alias/aws/sns"
TLS_POLICIES = ("ELBSecurityPolicy-TLS13-1-2-2021-06", "ELBSecurityPolicy-TLS13-1-2-Res-2021-06")
PUBLIC_ACLS = ("public-read", "public-read-write", "authenticated-read")
# AWS resource types that cannot carry tags; every other aws: resource must be tagged.
UNTAGGABLE = frozenset(
    {
        "aws:ec2/route:Route",
        "aws:ec2/routeTableAssociation:RouteTableAssociation",
        "aws:ec2/volumeAttachment:VolumeAttachment",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:route53/record:Record",
        "aws:acm/certificateValidation:CertificateValidation",
        "aws:lb/targetGroupAttachment:TargetGroupAttachment",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketVersioning:BucketVersioning",
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "aws:s3/bucketPolicy:BucketPolicy",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:sns/topicSubscription:TopicSubscription",
    }
)


def _ingress_entries(args: ResourceValidationArgs) -> Iterable[Mapping[str, Any]]:
    """Ingress rules of a resource, normalised to {fromPort, toPort, ipProtocol, cidrs}."""
    props = args.props
    if args.resource_type == INGRESS_RULE:
        yield {**props, "cidrs": [c for c in (props.get("cidrIpv4"), props.get("cidrIpv6")) if c]}
    elif args.resource_type == LEGACY_RULE and props.get("type") == "ingress":
        yield {**props, "ipProtocol": props.get("protocol"), "cidrs": [*(props.get("cidrBlocks") or []), *(props.get("ipv6CidrBlocks") or [])]}
    elif args.resource_type == SECURITY_GROUP:
        for rule in props.get("ingress") or []:
            yield {**rule, "ipProtocol": rule.get("protocol"), "cidrs": [*(rule.get("cidrBlocks") or []), *(rule.get("ipv6CidrBlocks") or [])]}


def _ports(rule: Mapping[str, Any]) -> range:
    if str(rule.get("ipProtocol")) in ("-1", "all"):
        return range(0, 65536)
    low = int(rule.get("fromPort") or 0)
    return range(low, int(rule.get("toPort", low) or low) + 1)


def no_internet_to_ssh_or_data(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for rule in _ingress_entries(args):
        if not any(cidr in INTERNET for cidr in rule["cidrs"]):
            continue
        ports = _ports(rule)
        for port, service in PROTECTED_PORTS.items():
            if port in ports:
                report_violation(f"{service} (port {port}) is open to the internet ({', '.join(rule['cidrs'])})")


def _role_of(resource: Any) -> str | None:
    return ((resource.props or {}).get("tags") or {}).get(TAG_ROLE)


def _dependency(resource: Any, prop: str) -> Any | None:
    """The resource the value of input `prop` came from (a rule's group, a block's bucket)."""
    found = resource.property_dependencies.get(prop) or []
    return found[0] if found else None


def data_tier_only_from_clients(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for rule in args.resources:
        if rule.resource_type != INGRESS_RULE:
            continue
        target = _dependency(rule, "securityGroupId")
        group = _role_of(target) if target else None
        if group not in DATA_GROUPS:
            continue
        port = int(rule.props.get("fromPort") or -1)
        source = _dependency(rule, "referencedSecurityGroupId")
        source_role = _role_of(source) if source else None
        allowed = {*DATA_CLIENTS, group} if port not in ADMIN_FLOWS else {ADMIN_FLOWS[port]}
        if source_role not in allowed:
            peer = source_role or rule.props.get("cidrIpv4") or rule.props.get("cidrIpv6") or "unknown"
            report_violation(
                f"{group} group admits {peer} on port {port}; only {', '.join(sorted(allowed))} may connect",
                rule.urn,
            )


def imdsv2_required(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in (LAUNCH_TEMPLATE, INSTANCE):
        return
    tokens = (args.props.get("metadataOptions") or {}).get("httpTokens")
    if tokens != "required":
        report_violation(f"instance metadata must require IMDSv2 tokens (metadataOptions.httpTokens is {tokens!r})")


def _encrypted(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def volumes_encrypted(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = args.props
    if args.resource_type == VOLUME:
        volumes = [("volume", props)]
    elif args.resource_type == LAUNCH_TEMPLATE:
        volumes = [(m.get("deviceName", "?"), m.get("ebs") or {}) for m in props.get("blockDeviceMappings") or []]
    elif args.resource_type == INSTANCE:
        volumes = [("root", props["rootBlockDevice"])] if props.get("rootBlockDevice") else []
        volumes += [(d.get("deviceName", "?"), d) for d in props.get("ebsBlockDevices") or []]
    else:
        return
    for device, volume in volumes:
        if not _encrypted(volume.get("encrypted")):
            report_violation(f"EBS volume {device} is not encrypted")


def lb_listener_tls(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in LISTENERS:
        return
    props = args.props
    protocol = props.get("protocol")
    if protocol in ("HTTPS", "TLS"):
        if not props.get("certificateArn"):
            report_violation("TLS listener has no certificate")
        if props.get("sslPolicy") not in TLS_POLICIES:
            report_violation(f"TLS listener policy {props.get('sslPolicy')!r} is not one of {', '.join(TLS_POLICIES)}")
        return
    actions = props.get("defaultActions") or []
    redirects = [a for a in actions if a.get("type") == "redirect" and (a.get("redirect") or {}).get("protocol") == "HTTPS"]
    if not actions or len(redirects) != len(actions):
        report_violation(f"{protocol} listener on port {props.get('port')} must only redirect to HTTPS")


def _dashboard_paths(rule: Mapping[str, Any]) -> set[str]:
    """The dashboard paths a listener rule's path conditions match."""
    patterns = [v for c in rule.get("conditions") or [] for v in ((c.get("pathPattern") or {}).get("values") or [])]
    return {path for path in DASHBOARD_PATHS for pattern in patterns
            if pattern == path or pattern.startswith((path + "/", path + "*"))}


def _behind_login(actions: list[Mapping[str, Any]]) -> bool:
    """Whether a rule's actions log the operator in before anything else, or only refuse."""
    ordered = sorted(enumerate(actions), key=lambda pair: (pair[1].get("order") or 0, pair[0]))
    steps = [action for _, action in ordered]
    if len(steps) == 1 and steps[0].get("type") == "fixed-response":
        return str((steps[0].get("fixedResponse") or {}).get("statusCode", "")).startswith("4")
    return bool(steps) and steps[0].get("type") in LOGIN_ACTIONS


def _password_login_planned(resources: Iterable[Any]) -> bool:
    """Whether the plan holds the dashboards' password (the secret nginx checks the login against)."""
    return any(r.resource_type == SSM_PARAMETER and str(r.props.get("name", "")).endswith("/dashboardPassword")
               and r.props.get("type") == "SecureString" for r in resources)


def _behind_password_login(rule: Any, password_planned: bool) -> bool:
    """A rule that forwards only, to an nginx asking for the password login: tagged so, with the
    password in the plan."""
    actions = rule.props.get("actions") or []
    return (password_planned and (rule.props.get("tags") or {}).get(LOGIN_TAG) == PASSWORD_LOGIN
            and bool(actions) and all(a.get("type") == "forward" for a in actions))


def dashboards_behind_login(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    guarded: dict[str, set[str]] = {}
    password_planned = _password_login_planned(args.resources)
    for rule in args.resources:
        if rule.resource_type not in LISTENER_RULES or not (paths := _dashboard_paths(rule.props)):
            continue
        if not (_behind_login(rule.props.get("actions") or []) or _behind_password_login(rule, password_planned)):
            report_violation(f"listener rule {rule.name} serves {', '.join(sorted(paths))} without the operator "
                             f"login first ({' or '.join(LOGIN_ACTIONS)}, or forwarded to nginx's password "
                             "login: tag photostack:login and the dashboardPassword secret)", rule.urn)
        elif (listener := _dependency(rule, "listenerArn")) is not None:
            guarded.setdefault(listener.urn, set()).update(paths)
    for listener in args.resources:
        forwards = any(a.get("type") == "forward" for a in listener.props.get("defaultActions") or [])
        if listener.resource_type in LISTENERS and forwards:
            missing = set(DASHBOARD_PATHS) - guarded.get(listener.urn, set())
            if missing:
                report_violation(f"listener {listener.name} forwards {', '.join(sorted(missing))} to the site "
                                 "with no rule asking for the operator login", listener.urn)


def s3_acl_not_public(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type == BUCKET and args.props.get("acl") in PUBLIC_ACLS:
        report_violation(f"bucket ACL {args.props['acl']!r} makes it public")


BLOCK_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def s3_public_access_blocked(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    blocked = set()
    for block in args.resources:
        if block.resource_type != PUBLIC_ACCESS_BLOCK:
            continue
        bucket = _dependency(block, "bucket")
        if bucket is not None and all(block.props.get(flag) is True for flag in BLOCK_FLAGS):
            blocked.add(bucket.urn)
    for bucket in args.resources:
        if bucket.resource_type == BUCKET and bucket.urn not in blocked:
            report_violation(f"bucket {bucket.name} has no public access block with all four flags set", bucket.urn)


def sns_topics_encrypted(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != SNS_TOPIC:
        return
    key = args.props.get("kmsMasterKeyId")
    if not key:
        report_violation("SNS topic is not encrypted (no kmsMasterKeyId)")
    elif str(key).endswith(AWS_MANAGED_SNS_KEY):
        report_violation(
            f"SNS topic is encrypted with {AWS_MANAGED_SNS_KEY}, which CloudWatch cannot publish through; use a customer-managed key"
        )


def tagged_with_stack_and_role(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if not args.resource_type.startswith("aws:") or args.resource_type in UNTAGGABLE:
        return
    found = args.props.get("tags") or {}
    missing = [key for key in (TAG_STACK, TAG_ROLE) if not found.get(key)]
    if missing:
        report_violation(f"missing tags: {', '.join(missing)}")


def data_volumes_snapshotted(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Every EBS volume of a data role is the target of an enabled DLM snapshot policy (its tags
    include all the policy's target tags)."""
    targets = []
    for policy in args.resources:
        if policy.resource_type != DLM_POLICY or (policy.props.get("state") or "ENABLED") != "ENABLED":
            continue
        details = policy.props.get("policyDetails") or {}
        if "VOLUME" in (details.get("resourceTypes") or []) and details.get("targetTags"):
            targets.append(details["targetTags"])
    for volume in args.resources:
        if volume.resource_type != VOLUME or _role_of(volume) not in DATA_GROUPS:
            continue
        found = (volume.props or {}).get("tags") or {}
        if not any(all(found.get(k) == v for k, v in wanted.items()) for wanted in targets):
            report_violation(f"data volume {volume.name} is in no enabled snapshot (DLM) policy", volume.urn)


def backup_buckets_encrypted_and_versioned(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Every backup bucket has default encryption and versioning enabled (an overwritten or
    deleted backup stays recoverable)."""
    encrypted, versioned = set(), set()
    for r in args.resources:
        bucket = _dependency(r, "bucket")
        if bucket is None:
            continue
        if r.resource_type in BUCKET_ENCRYPTION and (r.props.get("rules") or []):
            encrypted.add(bucket.urn)
        if r.resource_type in BUCKET_VERSIONING and (r.props.get("versioningConfiguration") or {}).get("status") == "Enabled":
            versioned.add(bucket.urn)
    for bucket in args.resources:
        if bucket.resource_type != BUCKET or _role_of(bucket) != BACKUP_ROLE:
            continue
        missing = [what for what, ok in (("encryption", bucket.urn in encrypted), ("versioning", bucket.urn in versioned)) if not ok]
        if missing:
            report_violation(f"backup bucket {bucket.name} has no {' and no '.join(missing)}", bucket.urn)


MANDATORY = EnforcementLevel.MANDATORY

POLICIES = [
    ResourceValidationPolicy(
        "no-internet-to-ssh-or-data",
        "No security group opens SSH or a database, cache or queue port to 0.0.0.0/0.",
        no_internet_to_ssh_or_data,
        MANDATORY,
    ),
    StackValidationPolicy(
        "data-tier-only-from-clients",
        "Postgres, Redis, Memcached and RabbitMQ groups admit only the app and worker groups (plus their own peers).",
        data_tier_only_from_clients,
        MANDATORY,
    ),
    ResourceValidationPolicy("imdsv2-required", "Instances and launch templates require IMDSv2.", imdsv2_required, MANDATORY),
    ResourceValidationPolicy("volumes-encrypted", "Every EBS volume is encrypted.", volumes_encrypted, MANDATORY),
    ResourceValidationPolicy(
        "lb-listener-tls", "Listeners serve TLS with a modern policy, or only redirect to HTTPS.", lb_listener_tls, MANDATORY
    ),
    StackValidationPolicy(
        "dashboards-behind-login",
        "The load balancer serves /munin and /wallboard only after its operator login (OIDC/Cognito), or refuses them.",
        dashboards_behind_login,
        MANDATORY,
    ),
    ResourceValidationPolicy("s3-acl-not-public", "No bucket has a public ACL.", s3_acl_not_public, MANDATORY),
    StackValidationPolicy(
        "s3-public-access-blocked", "Every bucket blocks all public access.", s3_public_access_blocked, MANDATORY
    ),
    ResourceValidationPolicy(
        "sns-topics-encrypted",
        "Every SNS topic is encrypted with a customer-managed KMS key (AWS services cannot publish through alias/aws/sns).",
        sns_topics_encrypted,
        MANDATORY,
    ),
    StackValidationPolicy(
        "data-volumes-snapshotted",
        "Every data volume of Postgres, Redis, Memcached or RabbitMQ is in an enabled EBS snapshot (DLM) policy.",
        data_volumes_snapshotted,
        MANDATORY,
    ),
    StackValidationPolicy(
        "backup-buckets-encrypted-and-versioned",
        "Every backup bucket has default encryption and versioning enabled.",
        backup_buckets_encrypted_and_versioned,
        MANDATORY,
    ),
    ResourceValidationPolicy(
        "tagged-with-stack-and-role",
        "Every taggable AWS resource carries the photostack:stack and photostack:role tags.",
        tagged_with_stack_and_role,
        MANDATORY,
    ),
]
