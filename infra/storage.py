"""S3: the private media bucket the app stores photos in, and the release bundle hosts install from.

The bundle carries the project (what a host installs to converge itself), the stack config, the
app release built once on this machine (infra/release_artifact.py) and the wheelhouse of every
locked dependency a host installs (infra/wheelhouse.py): a host needs no checkout, no git, no PyPI.
The engine uploads it with the program's other resources (the lab uploads the same bundle). The
bundle names the wheelhouse by the lock's hash; `build_wheelhouse` builds it (once per lock)
before anything uploads the bundle: the offline plan, which uploads nothing, stays offline.

Both buckets block every form of public access, enforce bucket-owner object ownership (no ACLs)
and encrypt at rest. Photos reach users through the app's signed URLs, not a public bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra import release_artifact, wheelhouse
from infra.config import REPO_ROOT
from infra.lockfile import runtime_closure
from infra.tagging import tags

# What a host needs to install and converge itself: the packages and the stack configs.
BUNDLE_DIRS = ("infra", "roles", "app", "monitoring", "ops")
BUNDLE_FILES = ("pyproject.toml", "requirements.lock", "Pulumi.yaml")
BUNDLE_KEY = "release/photostack.zip"
# What the host's bootstrap venv installs: the project's run-time closure from the lock file (the
# lock also pins the test tools, which a host never runs).
HOST_REQUIREMENTS = "host-requirements.txt"


def build_wheelhouse(root: Path = REPO_ROOT) -> Path:
    """The wheelhouse the bundle of the checkout `root` carries, built unless cached (network: the
    package index pip is configured with)."""
    return wheelhouse.built(runtime_closure(root))


def bundle_archive(stack: str, root: Path = REPO_ROOT) -> pulumi.AssetArchive:
    """The release bundle: the project's packages, pyproject.toml, the lock file and the host's
    share of it with its wheelhouse (`build_wheelhouse` makes it), this stack's config and the
    built app release of the checkout `root`."""
    assets: dict[str, pulumi.Asset | pulumi.Archive] = {d: pulumi.FileArchive(str(root / d)) for d in BUNDLE_DIRS}
    host_requirements = runtime_closure(root)
    assets[HOST_REQUIREMENTS] = pulumi.StringAsset(host_requirements)
    assets[wheelhouse.BUNDLE_DIR] = pulumi.FileArchive(str(wheelhouse.directory(host_requirements)))
    assets[release_artifact.BUNDLE_ARTIFACT] = pulumi.FileArchive(str(release_artifact.built(root)))
    for name in (*BUNDLE_FILES, f"Pulumi.{stack}.yaml"):
        assets[name] = pulumi.FileAsset(str(root / name))
    return pulumi.AssetArchive(assets)


@dataclass(frozen=True)
class StorageArgs:
    """Inputs of the storage."""

    stack: str
    """Stack name, for tags and the bundle's stack config."""


class Storage(pulumi.ComponentResource):
    """The media bucket and the release bucket with the current bundle in it."""

    media_bucket: pulumi.Output[str]
    media_bucket_arn: pulumi.Output[str]
    release_bucket: pulumi.Output[str]
    release_bucket_arn: pulumi.Output[str]
    bundle_key: str

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("photostack:storage:Storage", name, None, opts)
        media = self._private_bucket(f"{name}-media", args.stack, "media", versioned=True)
        release = self._private_bucket(f"{name}-release", args.stack, "release", versioned=False)
        aws.s3.BucketObjectv2(
            f"{name}-bundle",
            bucket=release.id,
            key=BUNDLE_KEY,
            source=bundle_archive(args.stack),
            server_side_encryption="AES256",
            tags=tags(args.stack, "release", "bundle"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.media_bucket, self.media_bucket_arn = media.bucket, media.arn
        self.release_bucket, self.release_bucket_arn = release.bucket, release.arn
        self.bundle_key = BUNDLE_KEY
        self.register_outputs(
            {"media_bucket": self.media_bucket, "release_bucket": self.release_bucket, "bundle_key": BUNDLE_KEY}
        )

    def _private_bucket(self, name: str, stack: str, role: str, versioned: bool) -> aws.s3.Bucket:
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(name, tags=tags(stack, role, role), opts=child)
        aws.s3.BucketPublicAccessBlock(
            name,
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            name, bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=child
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            name,
            bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=child,
        )
        if versioned:
            # Deleted or overwritten photos stay recoverable.
            aws.s3.BucketVersioning(name, bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=child)
        return bucket
