"""The name of a stack's backup bucket: one pure function shared by the Pulumi program (which
creates the bucket) and the postgres role (whose pgBackRest writes into it)."""

from __future__ import annotations

from infra.config import StackConfig


def backup_bucket_name(config: StackConfig, stack: str) -> str:
    """`<domain with dashes>-<stack>-pg-backups`, cut to S3's 63 characters: named, not
    auto-suffixed by Pulumi, because hosts render it into pgbackrest.conf before any output exists."""
    name = f"{config.domain.replace('.', '-')}-{stack}-pg-backups".lower()
    return name[-63:].lstrip("-")
