"""Image storage behind one interface: a local directory (one-box; nginx serves it) or S3.

Keys are relative paths such as `p/0042/9f1c….jpg` (original) and `t/0042/9f1c….jpg`
(thumbnail); the public URL is `PHOTOSTACK_MEDIA_URL + key` for both backends (on AWS the
media URL is the bucket's or CDN's address).
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Protocol

from app.config import AppConfig, app_config


class Storage(Protocol):
    """Where image bytes live."""

    def save(self, key: str, data: bytes, content_type: str) -> None:
        """Store bytes under a key (atomically: readers see all or nothing)."""

    def read(self, key: str) -> bytes:
        """The bytes stored under a key (FileNotFoundError if none)."""

    def delete(self, key: str) -> None:
        """Remove a key; removing a missing key is not an error."""

    def exists(self, key: str) -> bool:
        """Whether a key is stored."""

    def url(self, key: str) -> str:
        """The public URL of a key."""


class LocalStorage:
    """A directory tree; writes go to a temp file renamed into place."""

    def __init__(self, root: Path, base_url: str) -> None:
        self.root = root
        self.base_url = base_url

    def _path(self, key: str) -> Path:
        # Lexical normalization is enough to refuse `..` and absolute keys, and costs no
        # syscalls (resolve() did a realpath walk per save: a visible share of a post's CPU).
        # The root itself is trusted configuration; symlinks inside it are ours.
        path = Path(os.path.normpath(self.root / key))
        if not path.is_relative_to(os.path.normpath(self.root)):
            raise ValueError(f"storage key {key!r} leaves the media root")
        return path

    def save(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o644)  # nginx (another user) serves it
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def url(self, key: str) -> str:
        return self.base_url + key


class S3Storage:
    """An S3 bucket through boto3 (a PUT is atomic by itself)."""

    def __init__(self, bucket: str, base_url: str, client) -> None:
        self.bucket = bucket
        self.base_url = base_url
        self.client = client

    def save(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def read(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def exists(self, key: str) -> bool:
        response = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        return any(item["Key"] == key for item in response.get("Contents", []))

    def url(self, key: str) -> str:
        return self.base_url + key


def build_storage(config: AppConfig) -> Storage:
    """The storage backend the config names."""
    if config.storage == "s3":
        import boto3  # only the AWS fleet needs it loaded

        client = boto3.client("s3", endpoint_url=config.s3_endpoint_url)
        return S3Storage(config.s3_bucket, config.media_url, client)
    return LocalStorage(config.media_root, config.media_url)


@functools.cache
def storage() -> Storage:
    """This process's storage backend."""
    return build_storage(app_config())
