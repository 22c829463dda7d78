"""The Pulumi program under Pulumi's mocks, asserted like policies (host counts, AZs, SGs, LB, tags, bootstrap)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from infra.bootstrap import render_user_data
from infra.config import ConfigError, load_stack_config
from infra.fleet import CANONICAL_OWNER_ID, UBUNTU_2404_NAME
from infra.inventory import TAG_NODE, TAG_ROLE, TAG_STACK
from infra.plan import is_secret, placeholder_secret, reveal, run_plan
from infra.policy.policies import UNTAGGABLE
from infra.topology import nodes
from tests._infra_plans import by_name, dependency, plan_of, role_tag

INSTANCE = "aws:ec2/instance:Instance"


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_one_instance_per_node_with_its_role_tags(stack):
    plan, config = plan_of(stack), load_stack_config(stack)
    expected = Counter(n.role for n in nodes(config))
    hosts = plan.outputs["hosts"]
    assert {role: len(ips) for role, ips in hosts.items()} == dict(expected)
    instances = [r for r in plan.of_type(INSTANCE) if r.inputs["tags"][TAG_ROLE] != "bastion"]
    assert sorted(r.inputs["tags"][TAG_NODE] for r in instances) == sorted(n.name for n in nodes(config))


def test_prod_host_counts_follow_the_config():
    hosts = plan_of("prod").outputs["hosts"]
    assert (len(hosts["nginx"]), len(hosts["app"]), len(hosts["worker"])) == (3, 25, 4)
    assert len(hosts["postgres"]) == 24 and len(hosts["memcached"]) == 6 and len(hosts["rabbitmq"]) == 3


def _instance_az(plan, instance):
    return dependency(plan, instance, "subnetId").inputs["availabilityZone"]


def test_every_replica_sits_in_another_az_than_its_primary():
    plan = plan_of("prod")
    azs = {r.inputs["tags"][TAG_NODE]: _instance_az(plan, r) for r in plan.of_type(INSTANCE)}
    for shard in range(12):
        assert azs[f"postgres-{shard}-primary"] != azs[f"postgres-{shard}-replica1"], shard
    assert azs["redis-primary"] != azs["redis-replica1"]
    assert len(set(azs.values())) == 3  # hosts spread over every configured zone


def test_every_service_host_is_in_a_private_subnet_and_only_the_bastion_is_public():
    plan = plan_of("prod")
    for instance in plan.of_type(INSTANCE):
        subnet = dependency(plan, instance, "subnetId")
        public = instance.inputs["tags"][TAG_ROLE] == "bastion"
        assert ("-public-" in subnet.name) is public, instance.name
        assert bool(instance.inputs.get("associatePublicIpAddress")) is public


def _ingress(plan):
    rules = set()
    for rule in plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        source = dependency(plan, rule, "referencedSecurityGroupId")
        peer = role_tag(source) if source else rule.inputs["cidrIpv4"]
        rules.add((role_tag(dependency(plan, rule, "securityGroupId")), rule.inputs["fromPort"], peer))
    return rules


HOSTS = ("nginx", "app", "worker", "postgres", "redis", "memcached", "rabbitmq", "munin_master")


def test_security_group_ingress_is_exactly_least_privilege():
    expected = {
        ("lb", 443, "0.0.0.0/0"),
        ("lb", 80, "0.0.0.0/0"),
        ("nginx", 80, "lb"),
        ("app", 8001, "nginx"),
        ("postgres", 5432, "app"), ("postgres", 5432, "worker"), ("postgres", 5432, "postgres"),
        ("redis", 6379, "app"), ("redis", 6379, "worker"), ("redis", 6379, "redis"),
        ("memcached", 11211, "app"), ("memcached", 11211, "worker"),
        ("rabbitmq", 5672, "app"), ("rabbitmq", 5672, "worker"),
        ("rabbitmq", 4369, "rabbitmq"), ("rabbitmq", 25672, "rabbitmq"),
        ("bastion", 22, "203.0.113.0/24"),
        *((host, 22, "bastion") for host in HOSTS),
        *((host, 4949, "munin_master") for host in HOSTS),
    }
    assert _ingress(plan_of("prod")) == expected


def test_load_balancer_health_check_and_listeners():
    plan = plan_of("prod")
    (group,) = plan.of_type("aws:lb/targetGroup:TargetGroup")
    check = group.inputs["healthCheck"]
    assert (check["path"], check["matcher"], check["healthyThreshold"], check["unhealthyThreshold"]) == ("/health", "200", 2, 2)
    assert (check["interval"], check["timeout"]) == (10, 5)
    listeners = {r.inputs["port"]: r.inputs for r in plan.of_type("aws:lb/listener:Listener")}
    assert listeners[443]["protocol"] == "HTTPS" and listeners[443]["certificateArn"]
    assert listeners[80]["defaultActions"] == [
        {"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}
    ]
    targets = {dependency(plan, a, "targetId").inputs["tags"][TAG_ROLE] for a in plan.of_type("aws:lb/targetGroupAttachment:TargetGroupAttachment")}
    assert targets == {"nginx"} and len(plan.of_type("aws:lb/targetGroupAttachment:TargetGroupAttachment")) == 3
    (alias,) = [r for r in plan.of_type("aws:route53/record:Record") if r.inputs["type"] == "A"]
    assert alias.inputs["name"] == "photostack.example.com" and alias.inputs["aliases"][0]["name"].endswith(".elb.amazonaws.com")


def test_the_pinned_image_is_checked_to_be_canonicals_ubuntu_2404():
    ((token, args),) = [call for call in plan_of("prod").lookups if call[0] == "aws:ec2/getAmi:getAmi"]
    assert args["owners"] == [CANONICAL_OWNER_ID] == ["099720109477"]
    assert {"name": "name", "values": [UBUNTU_2404_NAME]} in args["filters"] and "noble-24.04" in UBUNTU_2404_NAME
    # The stack config's image, never "the newest": a new upstream image must replace nothing.
    assert {"name": "image-id", "values": [load_stack_config("prod").ami]} in args["filters"]
    assert not args.get("mostRecent")


def test_every_taggable_resource_carries_stack_and_role():
    for resource in plan_of("prod").resources:
        if resource.type.startswith("aws:") and resource.type not in UNTAGGABLE:
            tags = resource.inputs.get("tags") or {}
            assert tags.get(TAG_STACK) == "prod" and tags.get(TAG_ROLE), resource.name


def test_user_data_installs_the_bundle_and_converges_the_node_roles():
    plan = plan_of("prod")
    resources = by_name(plan)
    script = resources["fleet-postgres-postgres-3-replica1"].inputs["userData"]
    assert script.startswith("#!/bin/bash\n")
    assert "roles: base, postgres, munin_node." in script
    assert "ops converge --stack prod --host postgres-3-replica1 --local" in script
    assert "release/photostack.zip" in script and "storage-release-mock" in script
    app = resources["fleet-app-app-7"].inputs["userData"]
    assert "roles: base, pgbouncer, app, munin_node." in app


def test_no_secret_value_appears_outside_a_secret():
    plan = plan_of("prod")
    secrets = [placeholder_secret(name) for name in ("dbPassword", "djangoSecretKey", "pagerdutyRoutingKey", "pagerdutyCloudwatchKey", "sentryDsn", "pingdomToken")]

    def plain_strings(value):
        if is_secret(value):
            return
        if isinstance(value, dict):
            for item in value.values():
                yield from plain_strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from plain_strings(item)
        elif isinstance(value, str):
            yield value

    for resource in plan.resources:
        for text in plain_strings(resource.inputs):
            assert not any(s in text for s in secrets), resource.name
    parameters = {r.inputs["name"]: r.inputs for r in plan.of_type("aws:ssm/parameter:Parameter")}
    assert all(p["type"] == "SecureString" and is_secret(p["value"]) for p in parameters.values())
    assert reveal(parameters["/photostack/prod/dbPassword"]["value"]) == placeholder_secret("dbPassword")
    # The routing key and DSN come from the integrations the program creates.
    assert reveal(parameters["/photostack/prod/sentryDsn"]["value"]) == placeholder_secret("sentryDsn")


def test_user_data_renders_without_any_secret_even_when_values_are_known():
    node = [n for n in nodes(load_stack_config("prod")) if n.name == "redis-primary"][0]
    script = render_user_data("prod", node, "us-east-1", "bucket-x", "release/photostack.zip")
    assert "roles: base, redis, munin_node." in script and "/photostack/prod/" in script
    assert "PLAN-SECRET" not in script and "password" not in script.lower()


def _statements(plan, role):
    policy = by_name(plan)[f"fleet-{role}-policy"].inputs["policy"]
    return {s["Sid"]: s for s in json.loads(policy)["Statement"]}


def test_instance_profiles_grant_only_what_the_role_needs():
    plan = plan_of("prod")
    postgres = _statements(plan, "postgres")
    assert [a.split(":parameter", 1)[1] for a in postgres["Secrets"]["Resource"]] == [
        "/photostack/prod/dbPassword",
        "/photostack/prod/replicationPassword",
    ]
    assert "MediaObjects" not in postgres
    nginx = _statements(plan, "nginx")
    assert set(nginx) == {"ReleaseBundle", "Inventory"}
    app = _statements(plan, "app")
    (media,) = [b for b in plan.of_type("aws:s3/bucket:Bucket") if b.name == "storage-media"]
    assert app["MediaObjects"]["Resource"] == [f"{media.outputs['arn']}/*"]
    assert "replicationPassword" not in json.dumps(app)


def test_postgres_data_lives_on_encrypted_protected_volumes_in_the_node_az():
    plan = plan_of("prod")
    volumes = plan.of_type("aws:ebs/volume:Volume")
    assert len(volumes) == 24
    assert all(v.inputs["encrypted"] and v.inputs["type"] == "gp3" and v.inputs["size"] == 1000 for v in volumes)
    resources = by_name(plan)
    volume = resources["fleet-postgres-postgres-5-replica1-data"]
    assert volume.inputs["availabilityZone"] == _instance_az(plan, resources["fleet-postgres-postgres-5-replica1"])


def test_the_program_refuses_a_onebox_stack():
    with pytest.raises(ConfigError, match="targets onebox"):
        run_plan(load_stack_config("onebox"), "onebox")


def test_components_use_photostack_type_tokens_and_parent_their_children():
    plan = plan_of("prod")
    components = [r for r in plan.resources if not r.custom]
    assert components and all(r.type.startswith("photostack:") for r in components)
    component_urns = {r.urn for r in components}
    orphans = [r.name for r in plan.resources if r.custom and r.parent not in component_urns]
    assert orphans == []
