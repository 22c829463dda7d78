"""The AWS target: the stack's EC2 instances, reached through its bastion with host keys pinned
from the EC2 API; records, secrets and the state operators share live in SSM (and CloudWatch
Logs), so every operator and host sees the same. The lab is this target with `AWS_ENDPOINT_URL`
pointing at its local stand-ins."""

from __future__ import annotations

import base64
import gzip
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from infra.config import ConfigError, StackConfig
from infra.inventory import Host
from infra.sharding import ShardMap
from infra.topology import STANDARD_PORTS

if TYPE_CHECKING:
    from infra.secrets_store import SsmSecrets  # imports pulumi: loaded only when used

T = TypeVar("T")
# How long a power-off or power-on is waited for (EC2 waiters poll every 2 s): a forced stop
# usually takes well under a minute; past this, the operator hears the instance did not stop.
POWER_WAIT = {"Delay": 2, "MaxAttempts": 90}


class SsmRecord:
    """An SSM String parameter (the hosts' instance role may read `/photostack/<stack>/*`)."""

    def __init__(self, name: str, region: str, client: Any = None):
        import boto3  # only AWS stacks need boto3 here

        self.name = name
        self.ssm = client or boto3.client("ssm", region_name=region)

    def load(self) -> Any:
        try:
            return json.loads(self.ssm.get_parameter(Name=self.name)["Parameter"]["Value"])
        except self.ssm.exceptions.ParameterNotFound:
            return None

    def save(self, value: Any) -> None:
        self.ssm.put_parameter(Name=self.name, Value=json.dumps(value, sort_keys=True), Type="String", Overwrite=True)


class SsmShardMapStore:
    """The AWS store: one SSM parameter per stack (the hosts' instance role may read it)."""

    def __init__(self, stack: str, region: str, client=None):
        import boto3  # only AWS stacks need boto3 here

        self.name = f"/photostack/{stack}/shardmap"
        self.ssm = client or boto3.client("ssm", region_name=region)

    def load_or_create(self, config: StackConfig) -> ShardMap:
        stored = self.load()
        if stored is None:
            shard_map = ShardMap.initial(config)
            self.ssm.put_parameter(Name=self.name, Value=pack_shard_map(shard_map), Type="String", Overwrite=False)
            return shard_map
        if problems := stored.disagreements(config, f"SSM {self.name}"):
            raise ConfigError(problems)
        return stored

    def check(self, config: StackConfig) -> ShardMap | None:
        """Raise one line per count the config states differently from the stored map (if any);
        the stored map otherwise."""
        stored = self.load()
        if stored is not None and (problems := stored.disagreements(config, f"SSM {self.name}")):
            raise ConfigError(problems)
        return stored

    def load(self) -> ShardMap | None:
        try:
            value = self.ssm.get_parameter(Name=self.name)["Parameter"]["Value"]
        except self.ssm.exceptions.ParameterNotFound:
            return None
        return ShardMap.from_json(gzip.decompress(base64.b64decode(value)).decode())

    def save(self, shard_map: ShardMap) -> None:
        self.ssm.put_parameter(Name=self.name, Value=pack_shard_map(shard_map), Type="String", Overwrite=True)


def pack_shard_map(shard_map: ShardMap) -> str:
    """The shard map as its SSM parameter value (gzip+base64 of its JSON)."""
    return base64.b64encode(gzip.compress(shard_map.to_json().encode(), mtime=0)).decode()


class AwsTarget:
    """An AWS stack (infra/targets/__init__.py says what each method answers)."""

    name = "aws"

    def __init__(self, config: StackConfig):
        self.config = config

    def client(self, service: str) -> Any:
        """A boto3 client of the stack's region (boto3 is slow to import: only AWS stacks load it)."""
        import boto3

        return boto3.client(service, region_name=self.config.region)

    def hosts(self, stack: str) -> list[Host]:
        from infra.aws_inventory import aws_hosts

        return aws_hosts(self.config, stack, self.client("ec2"))

    def ssh_files(self, stack: str, state: Path) -> tuple[Path | None, Path]:
        """The operator's key ($PHOTOSTACK_SSH_KEY, else the agent's) and the known_hosts of the
        stack's instances, keys pinned from the EC2 API (infra/host_keys.py)."""
        from infra.aws_inventory import stack_instances
        from infra.host_keys import pin_host_keys

        key = os.environ.get("PHOTOSTACK_SSH_KEY")
        ec2 = self.client("ec2")
        return Path(key) if key else None, pin_host_keys(stack_instances(stack, ec2), ec2, state)

    def open_access(self, stack: str, state: Path) -> None:
        pass  # instances are reachable once `pulumi up` made them; nothing to start here

    def close_access(self, stack: str, state: Path) -> None:
        pass

    def replaces_machines(self) -> bool:
        return True

    def power_off(self, stack: str, machine: str) -> str | None:
        """StopInstances with `Force` (a hung host cannot stall its own shutdown), then wait for
        `stopped`: only then can it take no more writes."""
        from infra.aws_inventory import node_instance

        ec2 = self.client("ec2")
        instance = node_instance(stack, machine, ec2)["InstanceId"]
        started = time.monotonic()
        ec2.stop_instances(InstanceIds=[instance], Force=True)
        ec2.get_waiter("instance_stopped").wait(InstanceIds=[instance], WaiterConfig=POWER_WAIT)
        return f"stopped {instance} ({machine}) through EC2 in {time.monotonic() - started:.1f} s"

    def power_on(self, stack: str, machine: str) -> str | None:
        from infra.aws_inventory import LIVE_STATES, node_instance

        ec2 = self.client("ec2")
        found = node_instance(stack, machine, ec2)
        instance = found["InstanceId"]
        if found["State"]["Name"] in LIVE_STATES:
            return None
        ec2.get_waiter("instance_stopped").wait(InstanceIds=[instance], WaiterConfig=POWER_WAIT)  # if stopping
        ec2.start_instances(InstanceIds=[instance])
        ec2.get_waiter("instance_running").wait(InstanceIds=[instance], WaiterConfig=POWER_WAIT)
        return f"started {instance} ({machine}) through EC2"

    def provisioned_by_pulumi(self) -> bool:
        return True

    def record(self, stack: str, name: str) -> SsmRecord:
        return SsmRecord(f"/photostack/{stack}/{name}", self.config.region)

    def shard_map_store(self, stack: str) -> SsmShardMapStore:
        return SsmShardMapStore(stack, self.config.region)

    def secret_store(self, stack: str, fill: bool = True) -> SsmSecrets:
        # `pulumi up` writes every secret (the config check requires them): nothing to fill.
        from infra.secrets_store import SsmSecrets

        return SsmSecrets(stack, self.client("ssm"))

    def shared(self, stack: str, local: Callable[[Path], T], cloud: Callable[[Callable[[str], Any]], T]) -> T:
        return cloud(self.client)

    def operators_share_machine(self) -> bool:
        return False

    def dashboard_base_url(self) -> str:
        return f"https://{self.config.domain}"  # the load balancer, behind the operator login

    def bind_address(self, host: Host) -> str:
        return host.address

    def address(self, host: Host) -> str:
        return host.address

    def one_machine(self) -> bool:
        return False

    def systemd_hosts(self) -> bool:
        return True

    def object_storage(self) -> bool:
        return True

    def data_device(self, host: Host) -> str | None:
        # A Nitro instance shows an EBS volume as an NVMe device whose serial number is the volume
        # id without its dash; udev links it by that, whatever name the attachment gave
        # (docs.aws.amazon.com/ebs/latest/userguide/identify-nvme-ebs-device.html).
        if host.data_volume is None:
            return None
        return f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{host.data_volume.replace('-', '')}"

    def private_networks(self) -> list[str]:
        return [self.config.vpc_cidr]

    def load_balancer_networks(self) -> list[str]:
        return [self.config.vpc_cidr]  # the ALB sits in the VPC's public subnets

    def port(self, role: str, index: int = 0) -> int:
        return STANDARD_PORTS[role]  # one node per host: every node on its role's standard port

    def port_span(self, role: str) -> range:
        return range(STANDARD_PORTS[role], STANDARD_PORTS[role] + 1)
