"""The AWS inventory from EC2 tags and the hosts' SSM secret reader, against a moto server over real HTTP."""

from __future__ import annotations

import boto3
import pytest

from infra.aws_inventory import aws_hosts, missing_nodes
from infra.config import ConfigError, load_stack_config
from infra.inventory import TAG_DATA_VOLUME
from infra.secrets_store import parameter_name, ssm_secret_reader
from infra.tagging import tags
from infra.targets.aws import AwsTarget
from infra.topology import nodes


@pytest.fixture
def aws(moto_account, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    requests = []
    session = boto3.session.Session(region_name="us-east-1")
    clients = {name: session.client(name, endpoint_url=moto_account) for name in ("ec2", "ssm")}
    clients["ec2"].meta.events.register("before-send", lambda request, **_: requests.append(request.url))
    clients["requests"] = requests
    return clients


def _launch(ec2, subnets, stack, role, node, az, public=False, extra_tags=None):
    """An instance created through the EC2 API with the tags the Pulumi program gives it."""
    tag_list = [{"Key": k, "Value": v} for k, v in {**tags(stack, role, node, node=node), **(extra_tags or {})}.items()]
    network = {"NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": subnets[az], "AssociatePublicIpAddress": public}]}
    ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": tag_list}], **network,
    )


@pytest.fixture
def prod_on_aws(aws):
    ec2 = aws["ec2"]
    config = load_stack_config("prod")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = {
        az: ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i * 32}.0/19", AvailabilityZone=az)["Subnet"]["SubnetId"]
        for i, az in enumerate(config.availability_zones)
    }
    _launch(ec2, subnets, "prod", "bastion", "bastion", config.availability_zones[0], public=True)
    for index, node in enumerate(nodes(config)):
        volume = {TAG_DATA_VOLUME: f"vol-{index:017x}"} if node.role == "postgres" else {}
        _launch(ec2, subnets, "prod", node.role, node.name, node.az, extra_tags=volume)
    # Noise the inventory must ignore: another stack's host, and a terminated prod host.
    _launch(ec2, subnets, "staging", "app", "app-0", config.availability_zones[0])
    _launch(ec2, subnets, "prod", "app", "app-99", config.availability_zones[0])
    gone = ec2.describe_instances(Filters=[{"Name": "tag:photostack:node", "Values": ["app-99"]}])
    ec2.terminate_instances(InstanceIds=[gone["Reservations"][0]["Instances"][0]["InstanceId"]])
    return config


def test_prod_hosts_come_from_ec2_tags_through_the_bastion(aws, prod_on_aws):
    config, ec2 = prod_on_aws, aws["ec2"]
    hosts = aws_hosts(config, "prod", ec2)
    assert [h.name for h in hosts] == [n.name for n in nodes(config)]
    bastion = ec2.describe_instances(Filters=[{"Name": "tag:photostack:role", "Values": ["bastion"]}])
    public_ip = bastion["Reservations"][0]["Instances"][0]["PublicIpAddress"]
    assert {h.gateway for h in hosts} == {f"ubuntu@{public_ip}:22"}
    by_name = {h.name: h for h in hosts}
    assert by_name["postgres-0-replica1"].roles == ("base", "postgres", "munin_node")
    assert by_name["app-3"].roles == ("base", "pgbouncer", "app", "munin_node")
    # A database host's own volume, and its device as a Nitro instance shows it (by-id, NVMe serial).
    index = [n.name for n in nodes(config)].index("postgres-0-replica1")
    assert by_name["postgres-0-replica1"].data_volume == f"vol-{index:017x}"
    assert AwsTarget(config).data_device(by_name["postgres-0-replica1"]) == (
        f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol{index:017x}")
    assert by_name["app-3"].data_volume is None and AwsTarget(config).data_device(by_name["app-3"]) is None
    assert all(h.address.startswith("10.20.") and h.port == 22 for h in hosts)
    assert missing_nodes(config, hosts) == []
    assert aws["requests"] and all(url.startswith("http://127.0.0.1:") for url in aws["requests"])


def test_a_stack_without_a_bastion_is_a_clear_error(aws):
    with pytest.raises(ConfigError) as error:
        aws_hosts(load_stack_config("staging"), "nosuchstack", aws["ec2"])
    assert error.value.problems == [
        "stack 'nosuchstack': no running bastion (EC2 tag photostack:stack=nosuchstack, photostack:role=bastion); "
        "run `pulumi up -s nosuchstack`"
    ]


def test_hosts_read_their_secrets_from_ssm(aws):
    ssm = aws["ssm"]
    ssm.put_parameter(Name=parameter_name("prod", "redisPassword"), Value="s3cret", Type="SecureString", Overwrite=True)
    secret = ssm_secret_reader("prod", ssm)
    assert secret("redisPassword") == "s3cret"
    with pytest.raises(ConfigError, match="no SSM parameter /photostack/prod/dbPassword"):
        secret("dbPassword")
