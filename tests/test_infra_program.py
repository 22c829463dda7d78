"""The Pulumi program under Pulumi's mocks, asserted like policies (host counts, AZs, SGs, LB, tags, bootstrap)."""

from __future__ import annotations

import base64
import gzip
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import boto3
import pytest

from infra.bootstrap import CONVERGE_ATTEMPTS, OPS_VENV, render_user_data
from infra.config import REPO_ROOT, ConfigError, load_stack_config
from infra.fleet import CANONICAL_OWNER_ID, UBUNTU_2404_NAME
from infra.inventory import TAG_NODE, TAG_ROLE, TAG_STACK, Host
from infra.offline_plan import is_secret, placeholder_secret, reveal, run_plan
from infra.secrets_store import ssm_secret_reader
from infra.sharding import ShardMap
from infra import release_artifact
from infra.lockfile import parse
from infra.storage import HOST_REQUIREMENTS, bundle_archive
from infra.topology import nodes
from roles.context import RoleContext
from roles.converge import host_state
from tests.fakes.ssm_server import SsmServer
from tests._infra_plans import by_name, dependency, plan_of, planned_parameters, role_tag, use_ssm

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
        ("munin_master", 80, "lb"),  # the Munin pages, behind the operator login
        ("app", 8001, "nginx"),
        ("nginx", 80, "munin_master"), ("app", 8001, "munin_master"),  # the health watcher's probes
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
    group = by_name(plan)["lb-nginx"]
    check = group.inputs["healthCheck"]
    assert (check["path"], check["matcher"], check["healthyThreshold"], check["unhealthyThreshold"]) == ("/health/node", "200", 2, 2)
    assert (check["interval"], check["timeout"]) == (10, 5)
    listeners = {r.inputs["port"]: r.inputs for r in plan.of_type("aws:lb/listener:Listener")}
    assert listeners[443]["protocol"] == "HTTPS" and listeners[443]["certificateArn"]
    assert listeners[80]["defaultActions"] == [
        {"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}
    ]
    attachments = plan.of_type("aws:lb/targetGroupAttachment:TargetGroupAttachment")
    targets = sorted((dependency(plan, a, "targetGroupArn").name, dependency(plan, a, "targetId").inputs["tags"][TAG_ROLE])
                     for a in attachments)
    assert targets == [("lb-munin", "munin_master")] + [("lb-nginx", "nginx")] * 3
    (alias,) = [r for r in plan.of_type("aws:route53/record:Record") if r.inputs["type"] == "A"]
    assert alias.inputs["name"] == "photostack.example.com" and alias.inputs["aliases"][0]["name"].endswith(".elb.amazonaws.com")


def test_the_dashboards_forward_only_after_the_operator_login():
    plan = plan_of("prod")
    resources = by_name(plan)
    rules = {r.name: r for r in plan.of_type("aws:lb/listenerRule:ListenerRule")}
    assert sorted(rules) == ["lb-munin-rule", "lb-wallboard-rule"]
    for name, group, paths in (("lb-munin-rule", "lb-munin", ["/munin", "/munin/*"]),
                               ("lb-wallboard-rule", "lb-nginx", ["/wallboard", "/wallboard/*"])):
        rule = rules[name]
        assert dependency(plan, rule, "listenerArn").inputs["port"] == 443
        assert rule.inputs["conditions"] == [{"pathPattern": {"values": paths}}]
        assert is_secret(rule.inputs["actions"])  # it holds the OIDC client secret
        login, forward = reveal(rule.inputs["actions"])
        assert login["type"] == "authenticate-oidc" and login["order"] < forward["order"]
        assert login["authenticateOidc"]["issuer"] == "https://accounts.google.com"
        assert login["authenticateOidc"]["onUnauthenticatedRequest"] == "authenticate"
        assert login["authenticateOidc"]["clientSecret"] == placeholder_secret("dashboardOidcClientSecret")
        assert forward == {"type": "forward", "order": 2, "targetGroupArn": resources[group].outputs["arn"]}
    # /munin/ may ask for a login (nginx's password login): the check asks the site's own /health.
    assert resources["lb-munin"].inputs["healthCheck"]["path"] == "/health"


def test_without_a_login_the_dashboards_answer_403_at_the_load_balancer():
    plan = plan_of("staging")
    for rule in plan.of_type("aws:lb/listenerRule:ListenerRule"):
        (action,) = rule.inputs["actions"]
        assert action["type"] == "fixed-response" and action["fixedResponse"]["statusCode"] == "403", rule.name


def test_the_pinned_image_is_checked_to_be_canonicals_ubuntu_2404():
    ((token, args),) = [call for call in plan_of("prod").lookups if call[0] == "aws:ec2/getAmi:getAmi"]
    assert args["owners"] == [CANONICAL_OWNER_ID] == ["099720109477"]
    assert {"name": "name", "values": [UBUNTU_2404_NAME]} in args["filters"] and "noble-24.04" in UBUNTU_2404_NAME
    # The stack config's image, never "the newest": a new upstream image must replace nothing.
    assert {"name": "image-id", "values": [load_stack_config("prod").ami]} in args["filters"]
    assert not args.get("mostRecent")


# AWS resource types with no tags argument (written out here, not taken from the policy pack,
# which the plan test must be able to contradict).
CANNOT_BE_TAGGED = {
    "aws:ec2/route:Route", "aws:ec2/routeTableAssociation:RouteTableAssociation",
    "aws:ec2/volumeAttachment:VolumeAttachment", "aws:iam/rolePolicy:RolePolicy", "aws:route53/record:Record",
    "aws:acm/certificateValidation:CertificateValidation", "aws:lb/targetGroupAttachment:TargetGroupAttachment",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketVersioning:BucketVersioning", "aws:sns/topicSubscription:TopicSubscription",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "aws:s3/bucketPolicy:BucketPolicy",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
}


def test_every_taggable_resource_carries_stack_and_role():
    for resource in plan_of("prod").resources:
        if resource.type.startswith("aws:") and resource.type not in CANNOT_BE_TAGGED:
            tags = resource.inputs.get("tags") or {}
            assert tags.get(TAG_STACK) == "prod" and tags.get(TAG_ROLE), resource.name


def test_user_data_installs_the_bundle_and_converges_the_node_roles():
    plan = plan_of("prod")
    resources = by_name(plan)
    script = resources["fleet-postgres-postgres-3-replica1"].inputs["userData"]
    assert script.startswith("#!/bin/bash\n")
    assert "roles: base, postgres, munin_node." in script
    assert "ops --stack prod converge --host postgres-3-replica1 --local" in script
    assert "release/photostack.zip" in script and "storage-release-mock" in script
    app = resources["fleet-app-app-7"].inputs["userData"]
    assert "roles: base, pgbouncer, app, munin_node." in app


def test_user_data_converge_command_parses_and_finds_the_bundles_stack_config(tmp_path, moto_account):
    """The converge line of user_data, run as a host runs it: from the unpacked bundle (no checkout),
    with the script's own environment and an (empty) EC2. It gets as far as the stack's inventory,
    so `ops` parsed its options and found `Pulumi.<stack>.yaml` outside site-packages."""
    node = [n for n in nodes(load_stack_config("staging")) if n.name == "app-0"][0]
    script = render_user_data("staging", node, "us-east-1", "bucket-x", "release/photostack.zip")
    exports = dict(pair.split("=", 1) for line in script.splitlines() if line.startswith("export ")
                   for pair in line.split()[1:])
    bundle = Path(exports["PHOTOSTACK_STACKS_DIR"])
    line = next(line for line in script.splitlines() if "/opt/photostack/ops-venv/bin/ops " in line)
    command = line.split("/opt/photostack/ops-venv/bin/ops ", 1)[1].removesuffix("; then")
    argv = shlex.split(command.replace("--host app-0", "--host no-such-node"))
    unpacked = tmp_path / bundle.name  # the bundle holds Pulumi.<stack>.yaml at its root
    unpacked.mkdir()
    shutil.copy(REPO_ROOT / "Pulumi.staging.yaml", unpacked)
    env = {**os.environ, "PHOTOSTACK_STACKS_DIR": str(unpacked), "PHOTOSTACK_STATE_DIR": str(tmp_path / "state"),
           "PYTHONPATH": str(REPO_ROOT), "AWS_ENDPOINT_URL": moto_account, "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test"}
    result = subprocess.run([sys.executable, "-m", "ops", *argv], cwd=unpacked, env=env, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("stack 'staging': no running bastion"), result.stderr
    assert "Pulumi.staging.yaml" in bundle_archive("staging").assets


def test_the_bundle_carries_the_built_release_the_user_data_names():
    """Hosts converge the app to the release built with the bundle (no git on a host)."""
    from roles.app.release import ARTIFACT_ENV, build_release

    artifact = Path(bundle_archive("staging").assets[release_artifact.BUNDLE_ARTIFACT].path)
    assert release_artifact.read(artifact).version == build_release().version
    node = [n for n in nodes(load_stack_config("staging")) if n.name == "app-0"][0]
    script = render_user_data("staging", node, "us-east-1", "bucket-x", "release/photostack.zip")
    assert f"export {ARTIFACT_ENV}=/opt/photostack/release/{release_artifact.BUNDLE_ARTIFACT}\n" in script


def test_ops_on_a_host_runs_from_a_venv_no_role_rebuilds():
    """munin_node rebuilds its monitoring venv when its pins change, the app builds one per set of
    pins: the boot's `ops` must survive both (a retried converge needs it again)."""
    from roles.app.release import VENVS
    from infra.role_settings import declared

    node = [n for n in nodes(load_stack_config("staging")) if n.name == "munin_master-0"][0]
    script = render_user_data("staging", node, "us-east-1", "bucket-x", "release/photostack.zip")
    assert f"{OPS_VENV}/bin/ops --stack staging converge" in script and "/opt/photostack/venv/" not in script
    monitoring = declared("munin_node")["munin_node_venv"]
    assert not OPS_VENV.startswith((monitoring + "/", VENVS + "/")) and OPS_VENV != monitoring


def test_hosts_install_the_projects_run_time_closure_not_the_test_tools():
    """The lock pins the test tools too (moto and its tree, ansible, pytest): a host installs only
    what the project needs at run time, with hashes."""
    bundle = bundle_archive("staging").assets
    pinned = {entry.name for entry in parse(bundle[HOST_REQUIREMENTS].text)}
    assert {"django", "boto3", "typer", "fabric", "celery"} <= pinned
    assert not pinned & {"moto", "pytest", "ansible-core", "ruff", "sympy"}
    node = [n for n in nodes(load_stack_config("staging")) if n.name == "app-0"][0]
    script = render_user_data("staging", node, "us-east-1", "bucket-x", "release/photostack.zip")
    assert f"--require-hashes -r /opt/photostack/release/{HOST_REQUIREMENTS}\n" in script


def _converge_block(script: str, ops: Path) -> str:
    """The converge part of a user_data script (from its `cd`), with `ops` standing in for the venv's."""
    block = script[script.index("cd /opt/photostack/release"):].replace("cd /opt/photostack/release\n", "")
    return block.replace("/opt/photostack/ops-venv/bin/ops", str(ops)).replace("sleep ", "true ")


@pytest.mark.parametrize(("failures", "status"), [(2, 0), (CONVERGE_ATTEMPTS, 1)])
def test_boot_converge_is_retried_a_bounded_number_of_times(tmp_path, failures, status):
    """A replica booting before its primary fails its first converges: user_data tries again, up to
    CONVERGE_ATTEMPTS times, then gives up with a non-zero exit (cloud-init reports the failure)."""
    node = [n for n in nodes(load_stack_config("staging")) if n.name == "postgres-0-replica1"][0]
    script = render_user_data("staging", node, "us-east-1", "bucket-x", "release/photostack.zip")
    ops = tmp_path / "ops"
    ops.write_text(f"#!/bin/sh\necho run >> {tmp_path}/runs\n[ $(wc -l < {tmp_path}/runs) -gt {failures} ]\n")
    ops.chmod(0o755)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", _converge_block(script, ops)], capture_output=True, text=True)
    assert result.returncode == status, result.stdout + result.stderr
    assert len((tmp_path / "runs").read_text().splitlines()) == min(failures + 1, CONVERGE_ATTEMPTS)


# Every secret the prod plan holds: the config's Pulumi secrets and the integration keys the
# program creates (the PagerDuty Events v2 and CloudWatch integrations, the Sentry DSN).
PROD_SECRETS = ("dbPassword", "replicationPassword", "pgbouncerAdminPassword", "redisPassword", "redisAdminPassword", "rabbitmqPassword", "erlangCookie", "scramSaltKey",
                "djangoSecretKey", "pingdomToken", "pagerdutyRoutingKey", "pagerdutyCloudwatchKey", "sentryDsn")


def _plain_strings(value):
    if is_secret(value):
        return
    if isinstance(value, dict):
        for item in value.values():
            yield from _plain_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _plain_strings(item)
    elif isinstance(value, str):
        yield value


def _secret_strings(value):
    if is_secret(value):
        yield json.dumps(reveal(value))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secret_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _secret_strings(item)


def test_no_secret_value_appears_outside_a_secret():
    plan = plan_of("prod")
    secrets = [f"PLAN-SECRET-{name}-do-not-leak" for name in PROD_SECRETS]
    inside = " ".join(text for r in plan.resources for text in _secret_strings(r.inputs))
    assert [s for s in secrets if s not in inside] == []  # each one really is in the plan, as a secret
    for resource in plan.resources:
        for text in _plain_strings(resource.inputs):
            assert "PLAN-SECRET-" not in text, resource.name  # no placeholder at all, known or not
    parameters = {r.inputs["name"]: r.inputs for r in plan.of_type("aws:ssm/parameter:Parameter")}
    secret_parameters = {name: p for name, p in parameters.items() if name.rsplit("/", 1)[1] in PROD_SECRETS}
    # All but the CloudWatch key: PagerDuty reads it. The Pingdom token is there for `ops pingdom sync`
    # (every operator's); no instance profile may read it (test_instance_profiles_grant_exactly_the_parameters_each_role_reads).
    assert sorted(n.rsplit("/", 1)[1] for n in secret_parameters) == sorted(set(PROD_SECRETS) - {"pagerdutyCloudwatchKey"})
    assert all(p["type"] == "SecureString" and is_secret(p["value"]) for p in secret_parameters.values())
    assert all(p["type"] == "String" and "value" not in p for n, p in parameters.items() if n not in secret_parameters)
    assert reveal(parameters["/photostack/prod/dbPassword"]["value"]) == "PLAN-SECRET-dbPassword-do-not-leak"
    # The routing key and DSN come from the integrations the program creates.
    assert reveal(parameters["/photostack/prod/sentryDsn"]["value"]) == "PLAN-SECRET-sentryDsn-do-not-leak"


def test_user_data_renders_without_any_secret_even_when_values_are_known():
    node = [n for n in nodes(load_stack_config("prod")) if n.name == "redis-primary"][0]
    script = render_user_data("prod", node, "us-east-1", "bucket-x", "release/photostack.zip")
    assert "roles: base, redis, munin_node." in script and "/photostack/prod/" in script
    assert "PLAN-SECRET" not in script and "password" not in script.lower()


def _statements(plan, role):
    policy = by_name(plan)[f"fleet-{role}-policy"].inputs["policy"]
    return {s["Sid"]: s for s in json.loads(policy)["Statement"]}


def _readable_parameters(plan, role):
    """The SSM parameter ARNs a role's instance profile may read (every ssm: statement)."""
    return {
        arn
        for statement in _statements(plan, role).values()
        if any(action.startswith("ssm:") for action in statement["Action"])
        for arn in statement["Resource"]
    }


PARAMETER = "arn:aws:ssm:us-east-1:123456789012:parameter/photostack/prod/"
APP_READS = ("dbPassword", "pgbouncerAdminPassword", "scramSaltKey", "redisPassword", "rabbitmqPassword", "djangoSecretKey",
             "sentryDsn", "shardmap", "primaries", "release", "media", "redis")
# What each role's hosts read from SSM when they converge (secrets, then records), nothing more.
PROFILE_READS = {
    "postgres": ("dbPassword", "replicationPassword", "pgbouncerAdminPassword", "scramSaltKey", "shardmap", "primaries"),
    "app": APP_READS,
    "worker": APP_READS,
    "redis": ("redisPassword", "redisAdminPassword", "redis"),
    "rabbitmq": ("rabbitmqPassword", "erlangCookie"),
    "memcached": (),
    "nginx": ("drained",),
    "munin_master": ("pagerdutyRoutingKey", "primaries", "redis"),
}


def _with_overlaps(names: tuple[str, ...]) -> set[str]:
    """The names, plus the overlap parameters `ops secret rotate` writes beside a rotatable secret."""
    from infra.secrets import ROTATABLE

    return {*names, *(f"{n}.{slot}" for n in names if n in ROTATABLE for slot in ("pending", "previous"))}


def test_instance_profiles_grant_exactly_the_parameters_each_role_reads():
    plan = plan_of("prod")
    for role, names in PROFILE_READS.items():
        assert _readable_parameters(plan, role) == {PARAMETER + name for name in _with_overlaps(names)}, role
        for statement in _statements(plan, role).values():
            assert statement["Resource"] == ["*"] if statement["Sid"] == "Inventory" else "*" not in statement["Resource"]
            assert not any(action.startswith("ssm:") and action != "ssm:GetParameter" for action in statement["Action"])
    postgres = _statements(plan, "postgres")
    assert "MediaObjects" not in postgres
    nginx = _statements(plan, "nginx")
    assert set(nginx) == {"ReleaseBundle", "Inventory", "Records"}
    app = _statements(plan, "app")
    (media,) = [b for b in plan.of_type("aws:s3/bucket:Bucket") if b.name == "storage-media"]
    assert app["MediaObjects"]["Resource"] == [f"{media.outputs['arn']}/*"]


def test_records_exist_before_any_host_boots_and_start_empty():
    parameters = {r.inputs["name"]: r.inputs for r in plan_of("prod").of_type("aws:ssm/parameter:Parameter")}
    for name in ("primaries", "release", "drained", "redis"):
        parameter = parameters[f"/photostack/prod/{name}"]
        assert (parameter["type"], parameter["insecureValue"]) == ("String", "null") and "value" not in parameter
    shard_map = parameters["/photostack/prod/shardmap"]
    assert shard_map["type"] == "String"
    stored = json.loads(gzip.decompress(base64.b64decode(shard_map["insecureValue"])))
    assert stored == json.loads(ShardMap.initial(load_stack_config("prod")).to_json())


def test_the_media_record_names_the_media_bucket_for_app_env():
    plan = plan_of("prod")
    parameters = {r.inputs["name"]: r.inputs for r in plan.of_type("aws:ssm/parameter:Parameter")}
    (media,) = [b for b in plan.of_type("aws:s3/bucket:Bucket") if b.name == "storage-media"]
    parameter = parameters["/photostack/prod/media"]
    assert parameter["type"] == "String" and json.loads(parameter["insecureValue"]) == {"bucket": media.outputs["bucket"]}


@pytest.fixture(scope="module")
def prod_ssm():
    """A local SSM holding every parameter of the prod plan, with its planned value."""
    with SsmServer("us-east-1", planned_parameters("prod")) as server:
        yield plan_of("prod"), server


@pytest.mark.parametrize("role", sorted(PROFILE_READS))
def test_each_host_renders_its_roles_with_only_its_instance_profile(role, prod_ssm, monkeypatch):
    """A host of each role renders everything it converges at boot while the SSM server enforces
    the role's planned profile: a read it lacks is AccessDenied, as on AWS."""
    plan, ssm = prod_ssm
    use_ssm(monkeypatch, ssm.url)
    config = load_stack_config("prod")
    hosts = tuple(
        Host(node.name, f"10.0.{i // 250}.{i % 250 + 4}", 22, "ubuntu", (node,), "ubuntu@198.51.100.1:22")
        for i, node in enumerate(nodes(config))
    )
    host = next(h for h in hosts if h.nodes[0].role == role)
    ssm.allowed, ssm.reads = _readable_parameters(plan, role), []
    secret = ssm_secret_reader("prod", boto3.client("ssm", region_name="us-east-1"))
    state = host_state(RoleContext(config, "prod", host, hosts, secret))
    assert state.resources
    records = {PARAMETER + name for name in ("shardmap", "primaries", "release", "drained", "media", "redis")}
    # Every record granted is one the roles render from (secrets may be read later, at run time).
    assert {ssm.arn(name) for name in ssm.reads} & records == _readable_parameters(plan, role) & records


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


def test_a_physical_shard_added_in_the_config_adds_its_instances_and_keeps_the_others():
    """`ops shard add` on AWS starts from `pulumi up` with one more physical shard: the program
    adds that shard's primary and replica (with their data volumes), and every existing node
    keeps its name, so no existing instance is replaced."""
    config = load_stack_config("staging")
    grown = config.model_copy(update={"postgres": config.postgres.model_copy(
        update={"physical_shards": config.postgres.physical_shards + 1})})
    before, after = plan_of("staging"), run_plan(grown, "staging")
    names = lambda plan: {r.inputs["tags"][TAG_NODE] for r in plan.of_type(INSTANCE)  # noqa: E731
                          if r.inputs["tags"][TAG_ROLE] != "bastion"}
    added = names(after) - names(before)
    assert names(before) <= names(after)
    assert added == {n.name for n in nodes(grown) if n.role == "postgres" and n.attrs["shard"] == 2}
    assert len(added) == grown.postgres.replicas_per_shard + 1
    volumes = [r for r in after.resources if r.type == "aws:ebs/volume:Volume"]
    assert len(volumes) == len([n for n in nodes(grown) if n.role == "postgres"])


def test_only_the_database_roles_reach_the_backup_bucket():
    plan = plan_of("prod")
    (bucket,) = [b for b in plan.of_type("aws:s3/bucket:Bucket") if b.name == "backups-bucket"]
    arn = bucket.outputs["arn"]
    postgres = _statements(plan, "postgres")
    assert postgres["BackupObjects"]["Resource"] == [f"{arn}/*"]
    assert postgres["BackupList"]["Resource"] == [arn]
    for role in ("app", "worker", "nginx", "redis"):
        assert arn not in json.dumps(_statements(plan, role))
    (bucket_policy,) = plan.of_type("aws:s3/bucketPolicy:BucketPolicy")
    deny = {s["Sid"]: s for s in json.loads(bucket_policy.inputs["policy"])["Statement"]}
    (postgres_role,) = [r for r in plan.of_type("aws:iam/role:Role") if r.name == "fleet-postgres-role"]
    assert deny["OnlyDatabaseRoles"]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] == [postgres_role.outputs["arn"]]
    assert deny["TlsOnly"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
