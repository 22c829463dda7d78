"""The data volume, read from the plan against the postgres role: the program and the role agree on
where the data lives. Each database instance names its own volume (the one attached to it), the
host finds that volume's device by its id, and the role mounts it at the path tagged on the volume,
which holds every cluster's data dir; elsewhere (other roles, the one-box) nothing is mounted."""

from __future__ import annotations

import pytest

from infra.config import load_stack_config
from infra.inventory import TAG_DATA_VOLUME, TAG_NODE, Host, onebox_hosts
from infra.tagging import TAG_MOUNT
from infra.topology import nodes
from roles.context import RoleContext
from roles.engine.resources import Filesystem
from roles.postgres.cluster import Cluster
from roles.postgres.role import data_volume
from tests._infra_plans import plan_of

INSTANCE, VOLUME = "aws:ec2/instance:Instance", "aws:ebs/volume:Volume"
ATTACHMENT = "aws:ec2/volumeAttachment:VolumeAttachment"


def context(stack: str, host: Host) -> RoleContext:
    return RoleContext(load_stack_config(stack), stack, host, (host,), lambda name: "x")


@pytest.mark.parametrize("stack", ["prod", "lab"])
def test_each_database_host_mounts_its_own_volume_where_its_clusters_live(stack: str) -> None:
    plan, config = plan_of(stack), load_stack_config(stack)
    volumes = {f"{v.name}-id": v for v in plan.of_type(VOLUME)}  # the mocks' ids: `<name>-id`
    attached = {a.inputs["volumeId"]: a.inputs["instanceId"] for a in plan.of_type(ATTACHMENT)}
    databases = [n for n in nodes(config) if n.role == "postgres"]
    instances = {i.inputs["tags"][TAG_NODE]: i for i in plan.of_type(INSTANCE)}
    assert databases and len(volumes) == len(databases)
    for node in databases:
        instance = instances[node.name]
        volume_id = instance.inputs["tags"][TAG_DATA_VOLUME]
        volume = volumes[volume_id]
        assert volume.inputs["tags"][TAG_NODE] == node.name and volume.inputs["availabilityZone"] == node.az
        assert attached[volume_id] == f"{instance.name}-id"  # attached to the instance that names it

        host = Host(node.name, "10.0.0.9", 22, "ubuntu", (node,), data_volume=volume_id)
        (mount,) = data_volume(context(stack, host))
        assert isinstance(mount, Filesystem)
        assert mount.device == f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{volume_id.replace('-', '')}"
        assert mount.path == volume.inputs["tags"][TAG_MOUNT]
        assert (mount.owner, mount.group) == ("postgres", "postgres")
        cluster = Cluster(config.postgres.version, node.attrs["shard"], node.attrs["replica"], host.address, 5432)
        assert cluster.data_dir.startswith(mount.path + "/")
    assert not [i.name for i in plan.of_type(INSTANCE) if i.inputs["tags"].get(TAG_NODE) not in
                {n.name for n in databases} and TAG_DATA_VOLUME in i.inputs["tags"]]


def test_the_one_box_mounts_nothing() -> None:
    config = load_stack_config("onebox")
    (host,) = onebox_hosts(config)
    assert data_volume(context("onebox", host)) == []
