"""Backups on AWS: the pgBackRest bucket and the EBS snapshot policy of the database volumes.

Two layers: pgBackRest writes every shard's backups and archived WAL to the backup bucket
(encrypted, versioned — an overwritten or deleted object stays recoverable for
`backups.bucketNoncurrentDays` — private, object access for the database role only); Data
Lifecycle Manager snapshots every data volume tagged for it once a day and keeps
`backups.snapshotRetain` snapshots (a crash-consistent copy of the disk, for a lost volume).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.tagging import tags

ROLE = "backups"
# The tag a data volume carries for the snapshot policy to find it (infra/fleet.py sets it).
SNAPSHOT_TAG = ("photostack:snapshots", "daily")
DLM_SERVICE_POLICY = "arn:aws:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole"
ASSUME_DLM = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "dlm.amazonaws.com"}, "Action": "sts:AssumeRole"}],
})


@dataclass(frozen=True)
class BackupsArgs:
    """Inputs of the backup layers."""

    stack: str
    """Stack name, for tags and the snapshot policy's target."""
    bucket_name: str
    """The backup bucket's name (infra/backup_naming.py; hosts render it before any output exists)."""
    noncurrent_days: int
    """Days an overwritten or deleted object version is kept."""
    snapshot_retain: int
    """Daily snapshots kept per data volume."""


def bucket_policy(bucket_arn: str, writer_role_arns: list[str]) -> str:
    """Object reads and writes only for the database roles, and only over TLS. Everything else
    (administrators included) may still manage the bucket, not read or change the backups."""
    objects = f"{bucket_arn}/*"
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "OnlyDatabaseRoles", "Effect": "Deny", "Principal": "*",
             "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:GetObjectVersion", "s3:DeleteObjectVersion"],
             "Resource": [objects],
             "Condition": {"ArnNotEquals": {"aws:PrincipalArn": sorted(writer_role_arns)}}},
            {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": [bucket_arn, objects], "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        ],
    }, sort_keys=True)


def role_statements(bucket_arn: str) -> list[dict]:
    """What a database host's instance profile may do in the backup bucket (pgBackRest's needs)."""
    return [
        {"Sid": "BackupObjects", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": [f"{bucket_arn}/*"]},
        {"Sid": "BackupList", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket_arn]},
    ]


class Backups(pulumi.ComponentResource):
    """The backup bucket and the data volumes' snapshot policy."""

    bucket: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]

    def __init__(self, name: str, args: BackupsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("photostack:backups:Backups", name, None, opts)
        self._component = name
        child = pulumi.ResourceOptions(parent=self)
        bucket_name = f"{name}-bucket"
        # Protected: deleting the stack must not delete the backups with it.
        bucket = aws.s3.Bucket(bucket_name, bucket=args.bucket_name, tags=tags(args.stack, ROLE, bucket_name),
                               opts=pulumi.ResourceOptions(parent=self, protect=True))
        aws.s3.BucketPublicAccessBlock(bucket_name, bucket=bucket.id, block_public_acls=True, block_public_policy=True,
                                       ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        aws.s3.BucketOwnershipControls(bucket_name, bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"},
                                       opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            bucket_name, bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"}, "bucket_key_enabled": True}],
            opts=child)
        aws.s3.BucketVersioning(bucket_name, bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=child)
        # pgBackRest expires backups and WAL itself (retention); versions it overwrote or deleted
        # are kept a while against a mistaken expire or a compromised host, then go.
        aws.s3.BucketLifecycleConfiguration(
            bucket_name, bucket=bucket.id,
            rules=[{"id": "noncurrent", "status": "Enabled", "filter": {},
                    "noncurrent_version_expiration": {"noncurrent_days": args.noncurrent_days},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7}}],
            opts=child)
        self.bucket, self.bucket_arn = bucket.bucket, bucket.arn
        self._bucket_id = bucket.id

        dlm_name = f"{name}-snapshots"
        dlm_role = aws.iam.Role(f"{dlm_name}-role", assume_role_policy=ASSUME_DLM, tags=tags(args.stack, ROLE, dlm_name),
                                opts=child)
        aws.iam.RolePolicyAttachment(f"{dlm_name}-role", role=dlm_role.name, policy_arn=DLM_SERVICE_POLICY, opts=child)
        key, value = SNAPSHOT_TAG
        aws.dlm.LifecyclePolicy(
            dlm_name,
            description=f"photostack {args.stack}: daily snapshots of the database volumes",
            execution_role_arn=dlm_role.arn,
            state="ENABLED",
            policy_details={
                "resource_types": ["VOLUME"],
                "target_tags": {key: value, "photostack:stack": args.stack},
                "schedules": [{
                    "name": "daily",
                    "create_rule": {"interval": 24, "interval_unit": "HOURS", "times": "04:00"},
                    "retain_rule": {"count": args.snapshot_retain},
                    "copy_tags": True,
                }],
            },
            tags=tags(args.stack, ROLE, dlm_name),
            opts=child,
        )
        self.register_outputs({"bucket": self.bucket, "bucket_arn": self.bucket_arn})

    def grant(self, writer_role_arns: list[pulumi.Input[str]]) -> None:
        """Restrict object access to the database roles (once their roles exist)."""
        policy = pulumi.Output.all(self.bucket_arn, *writer_role_arns).apply(lambda v: bucket_policy(v[0], list(v[1:])))
        aws.s3.BucketPolicy(f"{self._component}-bucket", bucket=self._bucket_id, policy=policy,
                            opts=pulumi.ResourceOptions(parent=self))
