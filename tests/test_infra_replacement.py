"""Replacement safety, read from two offline plans: the shipped one and the next one after a new
image, a new bootstrap (so new user_data) and nothing else. Mocks cannot show a replacement,
so the inputs that would force one are compared instead: for every stateful instance and volume,
each such input is equal between the plans or listed in the resource's ignore_changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import bootstrap
from infra.config import REPO_ROOT, load_stack_config
from infra.fleet import DATA_DEVICE
from infra.inventory import TAG_NODE, TAG_ROLE
from infra.offline_plan import Plan, PlannedResource, run_plan
from tests._infra_plans import plan_of

INSTANCE = "aws:ec2/instance:Instance"
VOLUME = "aws:ebs/volume:Volume"
ATTACHMENT = "aws:ec2/volumeAttachment:VolumeAttachment"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
# The inputs whose change makes AWS (the provider) replace the resource.
REPLACE_FORCING = {
    INSTANCE: ("ami", "availabilityZone", "subnetId", "userData", "userDataBase64", "launchTemplate"),
    VOLUME: ("availabilityZone", "encrypted", "snapshotId", "kmsKeyId"),
    ATTACHMENT: ("deviceName", "instanceId", "volumeId"),
}
# Hosts holding data or cluster membership: replacing one is an outage or a failover.
STATEFUL_ROLES = {"postgres", "redis", "rabbitmq", "memcached", "munin_master"}
NEW_AMI = "ami-0fedcba9876543210"


@pytest.fixture(scope="module")
def next_plan() -> tuple[Plan, Plan]:
    """prod's shipped plan and its plan after a new image and a new bootstrap (one more converge
    attempt: the user_data of every host changes)."""
    before = plan_of("prod")
    config = load_stack_config("prod").model_copy(update={"ami": NEW_AMI})
    previous = bootstrap.CONVERGE_ATTEMPTS
    bootstrap.CONVERGE_ATTEMPTS = previous + 1
    try:
        after = run_plan(config, "prod")
    finally:
        bootstrap.CONVERGE_ATTEMPTS = previous
    return before, after


def _stateful(plan: Plan) -> dict[str, PlannedResource]:
    def role(r: PlannedResource) -> str | None:
        return (r.inputs.get("tags") or {}).get(TAG_ROLE)

    kept = {}
    for r in plan.resources:
        if r.type in (INSTANCE, VOLUME) and role(r) in STATEFUL_ROLES:
            kept[r.name] = r
        elif r.type == ATTACHMENT:
            kept[r.name] = r
    return kept


def test_the_next_plan_really_changes_the_image_and_the_user_data(next_plan):
    before, after = next_plan
    images = {r.name: r.inputs["imageId"] for r in after.of_type(TEMPLATE)}
    assert set(images.values()) == {NEW_AMI}
    old = {r.name: r.inputs.get("userData") for r in before.of_type(INSTANCE)}
    changed = [r.name for r in after.of_type(INSTANCE) if r.inputs.get("userData") != old[r.name]]
    attempts = f"$(seq 1 {bootstrap.CONVERGE_ATTEMPTS + 1})"
    assert "fleet-postgres-postgres-0-primary" in changed and attempts in by(after)["fleet-redis-redis-primary"].inputs["userData"]
    versions = {r.name: r.outputs["latestVersion"] for r in before.of_type(TEMPLATE)}
    assert all(r.outputs["latestVersion"] != versions[r.name] for r in after.of_type(TEMPLATE))


def by(plan: Plan) -> dict[str, PlannedResource]:
    return {r.name: r for r in plan.resources}


def test_no_replace_forcing_input_of_a_stateful_resource_changes_unless_ignored(next_plan):
    before, after = next_plan
    old, new = _stateful(before), _stateful(after)
    assert old.keys() == new.keys() and len([n for n in new if new[n].type == INSTANCE]) > 24
    unguarded = []
    for name, resource in new.items():
        ignored = set(resource.options["ignore_changes"])
        for key in REPLACE_FORCING[resource.type]:
            if resource.inputs.get(key) != old[name].inputs.get(key) and key not in ignored:
                unguarded.append((name, key))
        if resource.type == INSTANCE:
            # What the running instance follows is no concrete template version.
            assert resource.inputs["launchTemplate"]["version"] == "$Latest", name
            assert {"ami", "userData", "launchTemplate"} <= ignored, name
    assert unguarded == []


def test_data_volumes_are_protected_and_kept_and_attachments_detach_before_reattaching():
    plan = plan_of("prod")
    volumes, attachments = plan.of_type(VOLUME), plan.of_type(ATTACHMENT)
    assert len(volumes) == len(attachments) == 24
    assert all(v.options["protect"] and v.options["retain_on_delete"] for v in volumes)
    # AWS refuses to attach a volume that is in use: create-before-delete would fail every time.
    assert all(a.options["delete_before_replace"] and a.inputs["deviceName"] == DATA_DEVICE for a in attachments)


def _waits_for(plan: Plan, resource: PlannedResource) -> set[str]:
    """Every custom resource `resource` waits for, with components expanded to their children."""
    children: dict[str, list[PlannedResource]] = {}
    for r in plan.resources:
        children.setdefault(r.parent, []).append(r)
    found, todo = set(), list(resource.dependencies) + [u for urns in resource.property_dependencies.values() for u in urns]
    while todo:
        urn = todo.pop()
        if urn in found:
            continue
        found.add(urn)
        todo += [c.urn for c in children.get(urn, [])]
    return found


@pytest.mark.parametrize("node", ["app-0", "postgres-3-replica1", "rabbitmq-2"])
def test_instances_wait_for_what_their_first_boot_needs(node):
    plan = plan_of("prod")
    (instance,) = [r for r in plan.of_type(INSTANCE) if r.inputs["tags"].get(TAG_NODE) == node]
    waits = _waits_for(plan, instance)
    role = instance.inputs["tags"][TAG_ROLE]
    needed = {
        "NAT route": [r for r in plan.of_type("aws:ec2/route:Route") if "-private-" in r.name],
        "role policy": [r for r in plan.of_type("aws:iam/rolePolicy:RolePolicy") if r.name == f"fleet-{role}-policy"],
        "release object": plan.of_type("aws:s3/bucketObjectv2:BucketObjectv2"),
        "SSM parameters": plan.of_type("aws:ssm/parameter:Parameter"),
    }
    for what, resources in needed.items():
        assert resources, what
        missing = [r.name for r in resources if r.urn not in waits]
        assert missing == [], what


def test_prod_runs_three_rabbitmq_nodes():
    hosts = plan_of("prod").outputs["hosts"]
    assert len(hosts["rabbitmq"]) == 3


def test_staging_looks_up_its_own_zone_not_prods_names():
    prod, staging = load_stack_config("prod"), load_stack_config("staging")
    (zone,) = [args["name"] for token, args in plan_of("staging").lookups if token == "aws:route53/getZone:getZone"]
    (prod_zone,) = [args["name"] for token, args in plan_of("prod").lookups if token == "aws:route53/getZone:getZone"]
    assert zone == staging.hosted_zone and zone not in (prod.domain, prod_zone)
    assert staging.domain == zone or staging.domain.endswith("." + zone)


def test_a_stack_without_a_pinned_image_is_refused(tmp_path: Path):
    from infra.config import ConfigError

    text = (REPO_ROOT / "Pulumi.staging.yaml").read_text()
    (tmp_path / "Pulumi.staging.yaml").write_text(
        "\n".join(line for line in text.splitlines() if not line.startswith("  photostack:ami:")) + "\n")
    with pytest.raises(ConfigError) as error:
        load_stack_config("staging", root=tmp_path)
    assert "ami: required on AWS" in str(error.value)
