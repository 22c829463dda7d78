"""Stack records on AWS: the SSM parameters `ops` writes and hosts read when they converge.

The records (infra/records.py, and the shard map of infra/shardstore.py) live under
`/photostack/<stack>/<name>`. The program creates each one with its value before any operation
(the shard map's initial layout; `null`, "nothing stored yet", for the others) and never writes it
again (`ignore_changes`): failovers, deploys and moves own the value. So no host ever creates a
record, and a host's instance profile needs `ssm:GetParameter` on exactly the records its roles
render from, listed in `ROLE_RECORDS`. One record is the program's own and follows it: `media`,
the media bucket's name (chosen by the engine at `pulumi up`), which app.env needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.tagging import tags

ROLE = "records"

# What each record is and who renders from it (the name is the last part of the parameter path):
#   shardmap   logical → physical shard placement; postgres, pgbouncer (app, worker) and the app
#   primaries  which member of each shard is primary (failovers); postgres, pgbouncer, and the
#              munin master, whose munin.conf lists each postgres node's plugins by current role
#   release    the pinned release (`ops deploy --version`, `ops rollback`); app and worker
#   drained    app nodes a deploy took out of rotation; nginx
#   redis      which Redis node is primary (`ops redis-failover`); redis, app and worker (app.env),
#              and Munin's plugins of the Redis hosts (their munin-node, and the munin master)
#   media      {"bucket": the media bucket's name}; app and worker (app.env)
ROLE_RECORDS: dict[str, tuple[str, ...]] = {
    "postgres": ("shardmap", "primaries"),
    "app": ("shardmap", "primaries", "release", "media", "redis"),
    "worker": ("shardmap", "primaries", "release", "media", "redis"),
    "nginx": ("drained",),
    "munin_master": ("primaries", "redis"),
    "redis": ("redis",),
    "memcached": (),
    "rabbitmq": (),
}
EMPTY = "null"  # what infra/records.py loads as "nothing stored yet"


@dataclass(frozen=True)
class RecordParametersArgs:
    """Inputs of the record parameters."""

    stack: str
    """Stack name: the parameter path and tags."""
    shard_map: str
    """The initial shard map, packed as its store reads it (infra/shardstore.py)."""
    media_bucket: pulumi.Input[str]
    """The media bucket's name (the `media` record)."""


class RecordParameters(pulumi.ComponentResource):
    """One String parameter per record, created once and then left to operations."""

    arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: RecordParametersArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("photostack:records:RecordParameters", name, None, opts)
        initial = {"shardmap": args.shard_map, "primaries": EMPTY, "release": EMPTY, "drained": EMPTY, "redis": EMPTY}
        self.arns = {}
        for record, value in sorted(initial.items()):
            parameter = aws.ssm.Parameter(
                f"{name}-{record}",
                name=f"/photostack/{args.stack}/{record}",
                type="String",
                insecure_value=value,  # `value` is always a Pulumi secret; records are not secret
                tags=tags(args.stack, ROLE, record),
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["insecureValue"]),
            )
            self.arns[record] = parameter.arn
        media = aws.ssm.Parameter(
            f"{name}-media",
            name=f"/photostack/{args.stack}/media",
            type="String",
            insecure_value=pulumi.Output.from_input(args.media_bucket).apply(lambda bucket: json.dumps({"bucket": bucket})),
            tags=tags(args.stack, ROLE, "media"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.arns["media"] = media.arn
        self.register_outputs({"arns": self.arns})
