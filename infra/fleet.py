"""Fleets: one EC2 instance per node of a role, all from one launch template, plus the bastion.

The launch template pins what every host of the role shares: the stack's pinned Ubuntu 24.04 LTS image,
IMDSv2 only, an encrypted gp3 root volume and an instance profile allowed exactly what the role's
bootstrap reads (its release bundle, its own SSM secrets and records, the EC2 tags that make the
inventory). Each instance sits in its node's AZ; Postgres data lives on its own encrypted, protected
volume so replacing an instance (new image) keeps the data: the instance carries the volume's id
in a tag, by which the host finds the device and mounts it at the path tagged on the volume
(roles/postgres); every instance auto-recovers from a failed host. A running instance ignores later template versions and user_data: nodes move to a new
image one at a time, when relaunched (`ops replace-node`, see INSTANCE_IGNORE_CHANGES).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.backups import SNAPSHOT_TAG, role_statements
from infra.bootstrap import render_user_data
from infra.inventory import TAG_DATA_VOLUME
from infra.tagging import TAG_MOUNT, tags
from infra.topology import Node

CANONICAL_OWNER_ID = "099720109477"
UBUNTU_2404_NAME = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
ROOT_VOLUME_GB = 30
# The attachment's device name. A Nitro instance does not show it under this name (it shows an NVMe
# device): the host finds its volume by the volume id (infra/targets/aws.py `data_device`).
DATA_DEVICE = "/dev/sdf"


def ubuntu_ami(image_id: str) -> pulumi.Output[str]:
    """The pinned image `image_id`, looked up among Canonical's Ubuntu 24.04 LTS (amd64, gp3) images:
    a mistyped id or someone else's image fails the preview instead of booting hosts."""
    return aws.ec2.get_ami_output(
        owners=[CANONICAL_OWNER_ID],
        filters=[
            {"name": "image-id", "values": [image_id]},
            {"name": "name", "values": [UBUNTU_2404_NAME]},
            {"name": "virtualization-type", "values": ["hvm"]},
        ],
    ).id


# A launch (a new instance) reads these from the launch template's latest version and the
# rendered user_data; afterwards they must not replace a running host: a new image or new
# bootstrap pins reach a node when it is relaunched (`ops replace-node`), one node at a time.
# `ami` is read back from AWS after a launch from a newer template version.
INSTANCE_IGNORE_CHANGES = ["ami", "launchTemplate", "userData", "userDataBase64"]
LATEST_VERSION = "$Latest"


def _root_volume() -> dict[str, object]:
    return {
        "device_name": "/dev/sda1",
        "ebs": {"volume_size": ROOT_VOLUME_GB, "volume_type": "gp3", "encrypted": "true", "delete_on_termination": "true"},
    }


IMDSV2_ONLY = {"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1}


@dataclass(frozen=True)
class DataVolume:
    """A separate encrypted data volume per instance."""

    size_gb: int
    """Its size, GiB."""
    mount_path: str
    """Where its host mounts it (the role's data path, infra/host_layout.py); tagged on the volume."""


@dataclass(frozen=True)
class FleetArgs:
    """Inputs of one role's fleet."""

    stack: str
    """Stack name, for tags, SSM paths and the bootstrap."""
    role: str
    """The role every node of this fleet runs (the security group and tags are named after it)."""
    nodes: list[Node]
    """The nodes: one instance each, in the node's AZ."""
    instance_type: str
    """EC2 instance type."""
    ami_id: pulumi.Input[str]
    """Image of every instance (Ubuntu 24.04 LTS)."""
    subnet_ids: dict[str, pulumi.Input[str]]
    """Private subnet of each AZ."""
    security_group_id: pulumi.Input[str]
    """The role's security group."""
    region: str
    """AWS region, for the bootstrap's S3 client."""
    release_bucket: pulumi.Output[str]
    """Bucket holding the release bundle."""
    release_bucket_arn: pulumi.Input[str]
    """Its ARN, for the instance profile."""
    bundle_key: str
    """Key of the release bundle in that bucket."""
    secret_arns: list[pulumi.Input[str]]
    """SSM parameters the role may read (only its own secrets)."""
    record_arns: list[pulumi.Input[str]] = field(default_factory=list)
    """SSM records the role renders from (infra/record_parameters.py `ROLE_RECORDS`)."""
    media_bucket_arn: pulumi.Input[str] | None = None
    """Media bucket the role reads and writes (app and worker only)."""
    data_volume: DataVolume | None = None
    """A separate encrypted data volume per instance (Postgres), or none."""
    backup_bucket_arn: pulumi.Input[str] | None = None
    """Backup bucket the role's pgBackRest reads and writes (postgres only)."""
    key_name: pulumi.Input[str] | None = None
    """EC2 key pair for SSH, if any."""
    silences_arn: pulumi.Input[str] | None = None
    """SSM path of the stack's silences, which the role's alert pipeline reads (munin master only)."""
    audit_log_arn: pulumi.Input[str] | None = None
    """Log streams of the stack's audit trail, which the role copies for the wallboard (munin master only)."""
    boot_dependencies: list[pulumi.Resource] = field(default_factory=list)
    """What an instance's first boot reads or goes through (NAT routes, the release object, SSM
    parameters): each instance is created after them."""
    extra_tags: dict[str, str] = field(default_factory=dict)
    """Tags added to every instance."""


def profile_policy(args: FleetArgs) -> pulumi.Output[str]:
    """The role's IAM policy: its bundle, its secrets and records, the inventory read, (app/worker)
    the media bucket and (postgres) the backup bucket."""
    secret_count = len(args.secret_arns)

    def document(values: list) -> str:
        release_arn, media_arn, backup_arn, *parameter_arns = values
        secret_arns, record_arns = parameter_arns[:secret_count], parameter_arns[secret_count:]
        statements = [
            {"Sid": "ReleaseBundle", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{release_arn}/{args.bundle_key}"]},
            # The host finds its peers from EC2 tags (infra/aws_inventory.py); Describe* cannot be scoped.
            {"Sid": "Inventory", "Effect": "Allow", "Action": ["ec2:DescribeInstances"], "Resource": ["*"]},
        ]
        if secret_arns:
            statements.append(
                {"Sid": "Secrets", "Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": sorted(secret_arns)}
            )
        if record_arns:
            statements.append(
                {"Sid": "Records", "Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": sorted(record_arns)}
            )
        if media_arn:
            statements += [
                {"Sid": "MediaObjects", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": [f"{media_arn}/*"]},
                {"Sid": "MediaList", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [media_arn]},
            ]
        if backup_arn:
            statements += role_statements(backup_arn)
        return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)

    return pulumi.Output.all(
        args.release_bucket_arn, args.media_bucket_arn, args.backup_bucket_arn, *args.secret_arns, *args.record_arns
    ).apply(document)


def silences_policy(path_arn: str, audit_arn: str | None = None) -> str:
    """Read the silences every operator sets (`ops silence --host/--alert`, monitoring/alerts/silences.py)
    and, given its ARN, the audit trail they write (ops/audit.py, shown on the wallboard)."""
    statements = [{"Sid": "Silences", "Effect": "Allow", "Action": ["ssm:GetParametersByPath"], "Resource": [path_arn]}]
    if audit_arn is not None:
        statements.append({"Sid": "AuditTrail", "Effect": "Allow", "Action": ["logs:FilterLogEvents"],
                           "Resource": [audit_arn]})
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


ASSUME_EC2 = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)


class Fleet(pulumi.ComponentResource):
    """A role's instance profile, launch template, instances, data volumes and recovery alarms."""

    private_ips: dict[str, pulumi.Output[str]]
    instance_ids: dict[str, pulumi.Output[str]]
    role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: FleetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("photostack:fleet:Fleet", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role_tags = tags(args.stack, args.role, args.role)
        iam_role = aws.iam.Role(f"{name}-role", assume_role_policy=ASSUME_EC2, tags=role_tags, opts=child)
        self.role_arn = iam_role.arn
        policy = aws.iam.RolePolicy(f"{name}-policy", role=iam_role.id, policy=profile_policy(args), opts=child)
        policies = [policy]
        if args.silences_arn is not None:
            policies.append(aws.iam.RolePolicy(
                f"{name}-silences", role=iam_role.id,
                policy=pulumi.Output.all(args.silences_arn, args.audit_log_arn).apply(lambda arns: silences_policy(*arns)),
                opts=child))
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=iam_role.name, tags=role_tags, opts=child)
        template = aws.ec2.LaunchTemplate(
            f"{name}-template",
            image_id=args.ami_id,
            instance_type=args.instance_type,
            key_name=args.key_name,
            iam_instance_profile={"arn": profile.arn},
            vpc_security_group_ids=[args.security_group_id],
            metadata_options=IMDSV2_ONLY,
            block_device_mappings=[_root_volume()],
            tag_specifications=[{"resource_type": "volume", "tags": role_tags}],
            tags=role_tags,
            opts=child,
        )
        self.private_ips, self.instance_ids = {}, {}
        for node in args.nodes:
            volume = self._data_volume(name, args.data_volume, args, node) if args.data_volume else None
            volume_tag = {TAG_DATA_VOLUME: volume.id} if volume else {}
            instance = aws.ec2.Instance(
                f"{name}-{node.name}",
                launch_template={"id": template.id, "version": LATEST_VERSION},
                subnet_id=args.subnet_ids[node.az],
                metadata_options=IMDSV2_ONLY,
                user_data=args.release_bucket.apply(
                    lambda bucket, node=node: render_user_data(args.stack, node, args.region, bucket, args.bundle_key)
                ),
                tags={**tags(args.stack, args.role, node.name, node=node.name), **volume_tag, **args.extra_tags},
                # The policy too: the profile exists before its permissions do, and a first boot
                # without them fails to fetch the bundle.
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[*policies, profile, *args.boot_dependencies],
                    ignore_changes=INSTANCE_IGNORE_CHANGES,
                ),
            )
            if volume is not None:
                self._attach(name, node, volume, instance)
            aws.cloudwatch.MetricAlarm(
                f"{name}-{node.name}-recover",
                alarm_description=f"Recover {node.name} when its EC2 host fails",
                namespace="AWS/EC2",
                metric_name="StatusCheckFailed_System",
                statistic="Maximum",
                period=60,
                evaluation_periods=2,
                threshold=0,
                comparison_operator="GreaterThanThreshold",
                dimensions={"InstanceId": instance.id},
                alarm_actions=[f"arn:aws:automate:{args.region}:ec2:recover"],
                tags=tags(args.stack, args.role, f"{node.name}-recover"),
                opts=child,
            )
            self.private_ips[node.name] = instance.private_ip
            self.instance_ids[node.name] = instance.id
        self.register_outputs({"private_ips": self.private_ips, "instance_ids": self.instance_ids})

    def _data_volume(self, name: str, spec: DataVolume, args: FleetArgs, node: Node) -> aws.ebs.Volume:
        return aws.ebs.Volume(
            f"{name}-{node.name}-data",
            availability_zone=node.az,
            size=spec.size_gb,
            type="gp3",
            encrypted=True,
            # The snapshot policy (infra/backups.py) finds data volumes by this tag.
            tags={**tags(args.stack, args.role, f"{node.name}-data", node=node.name), SNAPSHOT_TAG[0]: SNAPSHOT_TAG[1],
                  TAG_MOUNT: spec.mount_path},
            # protect: `pulumi destroy` or a removed node refuses to delete it; retain_on_delete:
            # even an unprotected delete leaves the volume (and its data) in the account.
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )

    def _attach(self, name: str, node: Node, volume: aws.ebs.Volume, instance: aws.ec2.Instance) -> None:
        aws.ec2.VolumeAttachment(
            f"{name}-{node.name}-data-attachment",
            device_name=DATA_DEVICE,
            volume_id=volume.id,
            instance_id=instance.id,
            # A volume attaches to one instance at a time: replacing the attachment (its instance
            # was replaced) must detach from the old one before attaching to the new one.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )


@dataclass(frozen=True)
class BastionArgs:
    """Inputs of the bastion."""

    stack: str
    """Stack name, for tags."""
    ami_id: pulumi.Input[str]
    """Image (Ubuntu 24.04 LTS)."""
    subnet_id: pulumi.Input[str]
    """A public subnet."""
    security_group_id: pulumi.Input[str]
    """The bastion's group: SSH in from the admin networks only, SSH out to the VPC only."""
    ssh_public_key: str | None = None
    """Admin OpenSSH public key: becomes the EC2 key pair of the bastion and every host."""
    instance_type: str = "t3.micro"
    """EC2 instance type."""


class Bastion(pulumi.ComponentResource):
    """The only host reachable over SSH from outside; `ops` reaches every other host through it."""

    public_ip: pulumi.Output[str]
    private_ip: pulumi.Output[str]
    key_name: pulumi.Output[str] | None

    def __init__(self, name: str, args: BastionArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("photostack:fleet:Bastion", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bastion_tags = tags(args.stack, "bastion", "bastion")
        self.key_name = None
        if args.ssh_public_key:
            key = aws.ec2.KeyPair(f"{name}-admin-key", public_key=args.ssh_public_key, tags=bastion_tags, opts=child)
            self.key_name = key.key_name
        template = aws.ec2.LaunchTemplate(
            f"{name}-template",
            image_id=args.ami_id,
            instance_type=args.instance_type,
            key_name=self.key_name,
            vpc_security_group_ids=[args.security_group_id],
            metadata_options=IMDSV2_ONLY,
            block_device_mappings=[_root_volume()],
            tag_specifications=[{"resource_type": "volume", "tags": bastion_tags}],
            tags=bastion_tags,
            opts=child,
        )
        instance = aws.ec2.Instance(
            f"{name}-instance",
            launch_template={"id": template.id, "version": LATEST_VERSION},
            subnet_id=args.subnet_id,
            associate_public_ip_address=True,
            metadata_options=IMDSV2_ONLY,
            tags=tags(args.stack, "bastion", "bastion", node="bastion"),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=INSTANCE_IGNORE_CHANGES),
        )
        self.public_ip = instance.public_ip
        self.private_ip = instance.private_ip
        self.register_outputs({"public_ip": self.public_ip, "private_ip": self.private_ip, "key_name": self.key_name})
