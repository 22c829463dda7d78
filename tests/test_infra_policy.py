"""The policy pack: every policy passes a good resource and fails a bad one; the whole pack passes prod."""

from __future__ import annotations

import copy

import pytest
from pulumi_policy import PolicyResource, ResourceValidationArgs, StackValidationArgs

from infra.offline_plan import PlannedResource
from infra.policy.evaluate import _options, evaluate
from infra.policy.policies import (
    POLICIES,
    dashboards_behind_login,
    data_tier_only_from_clients,
    imdsv2_required,
    lb_listener_tls,
    no_internet_to_ssh_or_data,
    s3_acl_not_public,
    s3_public_access_blocked,
    sns_topics_encrypted,
    tagged_with_stack_and_role,
    volumes_encrypted,
)
from tests._infra_plans import plan_of

RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
GOOD_TAGS = {"photostack:stack": "prod", "photostack:role": "app"}


def violations(validate, resource_type, props):
    found = []
    args = ResourceValidationArgs(resource_type, props, f"urn:x::{resource_type}::r", "r", _options(""), None)
    validate(args, lambda message, urn=None: found.append(message))
    return found


def stack_violations(validate, resources):
    found = []
    validate(StackValidationArgs(resources), lambda message, urn=None: found.append(message))
    return found


def resource(type_, name, props, deps=None):
    return PolicyResource(type_, props, f"urn:{type_}::{name}", name, _options(""), None, None, [], deps or {})


def group(role):
    return resource("aws:ec2/securityGroup:SecurityGroup", f"sg-{role}", {"tags": {"photostack:role": role}})


def test_no_internet_to_ssh_or_data():
    assert violations(no_internet_to_ssh_or_data, RULE, {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0"}) == []
    assert violations(no_internet_to_ssh_or_data, RULE, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "10.0.0.0/8"}) == []
    assert violations(no_internet_to_ssh_or_data, RULE, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "0.0.0.0/0"}) == [
        "SSH (port 22) is open to the internet (0.0.0.0/0)"
    ]
    inline = {"ingress": [{"protocol": "tcp", "fromPort": 5000, "toPort": 6000, "cidrBlocks": ["0.0.0.0/0"]}]}
    assert violations(no_internet_to_ssh_or_data, "aws:ec2/securityGroup:SecurityGroup", inline) == [
        "Postgres (port 5432) is open to the internet (0.0.0.0/0)",
        "RabbitMQ (port 5672) is open to the internet (0.0.0.0/0)",
    ]


def _rule(target, port, source=None, cidr=None):
    deps = {"securityGroupId": [target]}
    if source:
        deps["referencedSecurityGroupId"] = [source]
    props = {"fromPort": port, "toPort": port, "ipProtocol": "tcp", **({"cidrIpv4": cidr} if cidr else {})}
    return resource(RULE, f"rule-{port}", props, deps)


def test_data_tier_only_from_clients():
    postgres, app, worker, nginx, bastion = (group(r) for r in ("postgres", "app", "worker", "nginx", "bastion"))
    good = [_rule(postgres, 5432, app), _rule(postgres, 5432, worker), _rule(postgres, 5432, postgres), _rule(postgres, 22, bastion)]
    assert stack_violations(data_tier_only_from_clients, good) == []
    assert stack_violations(data_tier_only_from_clients, [_rule(postgres, 5432, nginx)]) == [
        "postgres group admits nginx on port 5432; only app, postgres, worker may connect"
    ]
    assert stack_violations(data_tier_only_from_clients, [_rule(postgres, 5432, cidr="10.0.0.0/8")]) == [
        "postgres group admits 10.0.0.0/8 on port 5432; only app, postgres, worker may connect"
    ]
    assert stack_violations(data_tier_only_from_clients, [_rule(postgres, 22, app)]) == [
        "postgres group admits app on port 22; only bastion may connect"
    ]


def test_imdsv2_required():
    template = "aws:ec2/launchTemplate:LaunchTemplate"
    assert violations(imdsv2_required, template, {"metadataOptions": {"httpTokens": "required"}}) == []
    assert violations(imdsv2_required, "aws:ec2/instance:Instance", {"metadataOptions": {"httpTokens": "optional"}}) == [
        "instance metadata must require IMDSv2 tokens (metadataOptions.httpTokens is 'optional')"
    ]
    assert len(violations(imdsv2_required, template, {})) == 1


def test_volumes_encrypted():
    template = "aws:ec2/launchTemplate:LaunchTemplate"
    good = {"blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"encrypted": "true", "volumeType": "gp3"}}]}
    assert violations(volumes_encrypted, template, good) == []
    bad = {"blockDeviceMappings": [{"deviceName": "/dev/sdb", "ebs": {"volumeType": "gp3"}}]}
    assert violations(volumes_encrypted, template, bad) == ["EBS volume /dev/sdb is not encrypted"]
    assert violations(volumes_encrypted, "aws:ebs/volume:Volume", {"encrypted": True}) == []
    assert violations(volumes_encrypted, "aws:ebs/volume:Volume", {"encrypted": False}) == ["EBS volume volume is not encrypted"]
    assert violations(volumes_encrypted, "aws:ec2/instance:Instance", {"rootBlockDevice": {"encrypted": False}}) == [
        "EBS volume root is not encrypted"
    ]


def test_lb_listener_tls():
    listener = "aws:lb/listener:Listener"
    https = {"port": 443, "protocol": "HTTPS", "certificateArn": "arn:cert", "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06"}
    assert violations(lb_listener_tls, listener, https) == []
    assert violations(lb_listener_tls, listener, {**https, "sslPolicy": "ELBSecurityPolicy-2016-08"})[0].startswith("TLS listener policy")
    redirect = {"port": 80, "protocol": "HTTP", "defaultActions": [{"type": "redirect", "redirect": {"protocol": "HTTPS"}}]}
    assert violations(lb_listener_tls, listener, redirect) == []
    forward = {"port": 80, "protocol": "HTTP", "defaultActions": [{"type": "forward", "targetGroupArn": "arn:tg"}]}
    assert violations(lb_listener_tls, listener, forward) == ["HTTP listener on port 80 must only redirect to HTTPS"]


def test_dashboards_behind_login():
    listener = resource("aws:lb/listener:Listener", "https", {"protocol": "HTTPS", "defaultActions": [{"type": "forward"}]})

    def rule(name, paths, actions):
        return resource("aws:lb/listenerRule:ListenerRule", name,
                        {"conditions": [{"pathPattern": {"values": paths}}], "actions": actions}, {"listenerArn": [listener]})

    login = {"type": "authenticate-oidc", "order": 1, "authenticateOidc": {"issuer": "https://idp"}}
    forward = {"type": "forward", "order": 2, "targetGroupArn": "arn:tg"}
    refuse = {"type": "fixed-response", "fixedResponse": {"statusCode": "403"}}
    good = [listener, rule("munin", ["/munin/*"], [login, forward]), rule("board", ["/wallboard", "/wallboard/*"], [refuse])]
    assert stack_violations(dashboards_behind_login, good) == []
    # Forwarding first, or a login ordered after the forward, is an open dashboard.
    open_board = [listener, good[1], rule("board", ["/wallboard/*"], [forward])]
    assert stack_violations(dashboards_behind_login, open_board) == [
        "listener rule board serves /wallboard without the operator login first (authenticate-oidc or "
        "authenticate-cognito, or forwarded to nginx's password login: tag photostack:login and the dashboardPassword secret)",
        "listener https forwards /wallboard to the site with no rule asking for the operator login",
    ]
    late_login = [listener, good[1], rule("board", ["/wallboard*"], [forward, {**login, "order": 3}])]
    assert len(stack_violations(dashboards_behind_login, late_login)) == 2
    # No rule at all: the default action would serve the dashboards to anyone.
    assert stack_violations(dashboards_behind_login, [listener]) == [
        "listener https forwards /munin, /wallboard to the site with no rule asking for the operator login"
    ]


def test_dashboards_forwarded_to_nginxs_password_login_need_the_tag_and_the_password():
    listener = resource("aws:lb/listener:Listener", "https", {"protocol": "HTTPS", "defaultActions": [{"type": "forward"}]})
    password = resource("aws:ssm/parameter:Parameter", "secrets-dashboardPassword",
                        {"name": "/photostack/lab/dashboardPassword", "type": "SecureString"})

    def rule(name, paths, actions, tags):
        return resource("aws:lb/listenerRule:ListenerRule", name,
                        {"conditions": [{"pathPattern": {"values": paths}}], "actions": actions, "tags": tags},
                        {"listenerArn": [listener]})

    forward = {"type": "forward", "targetGroupArn": "arn:tg"}
    tagged = {"photostack:login": "nginx-password"}
    rules = [rule("munin", ["/munin/*"], [forward], tagged), rule("board", ["/wallboard/*"], [forward], tagged)]
    assert stack_violations(dashboards_behind_login, [listener, password, *rules]) == []
    # The tag alone, with no password for nginx to check: open.
    assert len(stack_violations(dashboards_behind_login, [listener, *rules])) == 3
    # The password planned but a rule not tagged as forwarding to the login: open.
    untagged = [rules[0], rule("board", ["/wallboard/*"], [forward], {})]
    assert len(stack_violations(dashboards_behind_login, [listener, password, *untagged])) == 2
    # Tagged, but answering something else than a forward to nginx (a fixed 200): open.
    fixed = {"type": "fixed-response", "fixedResponse": {"statusCode": "200"}}
    assert len(stack_violations(dashboards_behind_login, [listener, password, rules[0],
                                                          rule("board", ["/wallboard/*"], [fixed], tagged)])) == 2


def test_s3_not_public():
    bucket_type = "aws:s3/bucket:Bucket"
    assert violations(s3_acl_not_public, bucket_type, {}) == []
    assert violations(s3_acl_not_public, bucket_type, {"acl": "public-read"}) == ["bucket ACL 'public-read' makes it public"]
    bucket = resource(bucket_type, "media", {})
    flags = {"blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True, "restrictPublicBuckets": True}
    block = resource("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "media", flags, {"bucket": [bucket]})
    assert stack_violations(s3_public_access_blocked, [bucket, block]) == []
    weak = resource(block.resource_type, "media", {**flags, "restrictPublicBuckets": False}, {"bucket": [bucket]})
    assert stack_violations(s3_public_access_blocked, [bucket, weak]) == [
        "bucket media has no public access block with all four flags set"
    ]
    assert len(stack_violations(s3_public_access_blocked, [bucket])) == 1


def test_sns_topics_encrypted():
    topic = "aws:sns/topic:Topic"
    assert violations(sns_topics_encrypted, topic, {"kmsMasterKeyId": "arn:aws:kms:us-east-1:123456789012:key/k1"}) == []
    assert violations(sns_topics_encrypted, topic, {}) == ["SNS topic is not encrypted (no kmsMasterKeyId)"]
    managed = "SNS topic is encrypted with alias/aws/sns, which CloudWatch cannot publish through; use a customer-managed key"
    assert violations(sns_topics_encrypted, topic, {"kmsMasterKeyId": "alias/aws/sns"}) == [managed]
    assert violations(sns_topics_encrypted, topic, {"kmsMasterKeyId": "arn:aws:kms:us-east-1:123456789012:alias/aws/sns"}) == [managed]
    assert violations(sns_topics_encrypted, "aws:sqs/queue:Queue", {}) == []


def test_tagged_with_stack_and_role():
    assert violations(tagged_with_stack_and_role, "aws:ec2/vpc:Vpc", {"tags": GOOD_TAGS}) == []
    assert violations(tagged_with_stack_and_role, "aws:ec2/vpc:Vpc", {"tags": {"photostack:stack": "prod"}}) == [
        "missing tags: photostack:role"
    ]
    assert violations(tagged_with_stack_and_role, "aws:ec2/route:Route", {}) == []  # routes cannot carry tags
    assert violations(tagged_with_stack_and_role, "pagerduty:index/service:Service", {}) == []


@pytest.mark.parametrize("stack", ["staging", "prod", "lab"])
def test_every_policy_passes_every_resource_of_the_checked_in_stacks(stack):
    assert evaluate(plan_of(stack)) == []


def _broken_prod(change):
    plan = copy.deepcopy(plan_of("prod"))
    change(plan)
    return [f"{v.policy}: {v.message}" for v in evaluate(plan)]


def test_the_pack_catches_a_broken_prod():
    def open_postgres(plan):
        rule = next(r for r in plan.of_type(RULE) if r.name == "security-postgres-in-5432-app")
        for state in (rule.inputs, rule.outputs):
            state.pop("referencedSecurityGroupId")
            state["cidrIpv4"] = "0.0.0.0/0"
        rule.property_dependencies.pop("referencedSecurityGroupId")

    assert _broken_prod(open_postgres) == [
        "no-internet-to-ssh-or-data: Postgres (port 5432) is open to the internet (0.0.0.0/0)",
        "data-tier-only-from-clients: postgres group admits 0.0.0.0/0 on port 5432; only app, postgres, worker may connect",
    ]

    def untag_an_instance(plan):
        instance: PlannedResource = plan.of_type("aws:ec2/instance:Instance")[0]
        instance.inputs["tags"].pop("photostack:role")
        instance.inputs["metadataOptions"]["httpTokens"] = "optional"

    assert _broken_prod(untag_an_instance) == [
        "imdsv2-required: instance metadata must require IMDSv2 tokens (metadataOptions.httpTokens is 'optional')",
        "tagged-with-stack-and-role: missing tags: photostack:role",
    ]

    def page_through_the_aws_managed_key(plan):
        (topic,) = plan.of_type("aws:sns/topic:Topic")
        topic.inputs["kmsMasterKeyId"] = "alias/aws/sns"

    assert _broken_prod(page_through_the_aws_managed_key) == [
        "sns-topics-encrypted: SNS topic is encrypted with alias/aws/sns, which CloudWatch cannot publish through; use a customer-managed key"
    ]


def test_the_pack_has_the_policies_the_issue_asks_for():
    assert [p.name for p in POLICIES] == [
        "no-internet-to-ssh-or-data",
        "data-tier-only-from-clients",
        "imdsv2-required",
        "volumes-encrypted",
        "lb-listener-tls",
        "dashboards-behind-login",
        "s3-acl-not-public",
        "s3-public-access-blocked",
        "sns-topics-encrypted",
        "data-volumes-snapshotted",
        "backup-buckets-encrypted-and-versioned",
        "tagged-with-stack-and-role",
    ]


def test_the_pack_refuses_a_data_volume_without_a_snapshot_policy():
    def unsnapshot_a_volume(plan):
        volume = next(v for v in plan.of_type("aws:ebs/volume:Volume") if v.name.endswith("postgres-0-primary-data"))
        for state in (volume.inputs, volume.outputs):
            state["tags"].pop("photostack:snapshots", None)

    assert _broken_prod(unsnapshot_a_volume) == [
        "data-volumes-snapshotted: data volume fleet-postgres-postgres-0-primary-data is in no enabled snapshot (DLM) policy"
    ]

    def disable_the_policy(plan):
        (policy,) = plan.of_type("aws:dlm/lifecyclePolicy:LifecyclePolicy")
        for state in (policy.inputs, policy.outputs):
            state["state"] = "DISABLED"

    assert len(_broken_prod(disable_the_policy)) == len(plan_of("prod").of_type("aws:ebs/volume:Volume"))


def test_the_pack_refuses_a_backup_bucket_without_encryption_and_versioning():
    def drop(plan, type_):
        plan.resources[:] = [r for r in plan.resources if not (r.type == type_ and r.name == "backups-bucket")]

    assert _broken_prod(lambda plan: drop(plan, "aws:s3/bucketVersioning:BucketVersioning")) == [
        "backup-buckets-encrypted-and-versioned: backup bucket backups-bucket has no versioning"
    ]

    def suspend_versioning_and_drop_encryption(plan):
        drop(plan, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
        versioning = next(r for r in plan.of_type("aws:s3/bucketVersioning:BucketVersioning") if r.name == "backups-bucket")
        for state in (versioning.inputs, versioning.outputs):
            state["versioningConfiguration"]["status"] = "Suspended"

    assert _broken_prod(suspend_versioning_and_drop_encryption) == [
        "backup-buckets-encrypted-and-versioned: backup bucket backups-bucket has no encryption and no versioning"
    ]
