"""Runbook commands on a Redis instance, as shell text run as root on its host (ops/redis_failover.py).

Each speaks as the admin login (replication commands are `@dangerous`, which the app's login may
not run), its password read from the root-only ADMIN_AUTH file into the environment: never on a
command line."""

from __future__ import annotations

import shlex

from roles.redis.acl import ADMIN_USER
from roles.redis.role import ADMIN_AUTH

# The app's feeds (app/feed.py `feed_key`): rebuilt from the shards when read and missing.
FEED_PATTERN = "feed:*"
# Keys per UNLINK: one short command per thousand feeds (UNLINK frees their memory in the background).
UNLINK_BATCH = 1000


def _cli(address: str, port: int) -> str:
    return f"redis-cli --no-auth-warning --user {ADMIN_USER} -h {shlex.quote(address)} -p {port}"


def _as_admin(script: str, auth_file: str = ADMIN_AUTH) -> str:
    return f'set -o pipefail; export REDISCLI_AUTH="$(cat {auth_file})"; {script}'


def replication_offset(address: str, port: int, auth_file: str = ADMIN_AUTH) -> str:
    """Print how far the instance's replication stream got (INFO replication's
    `master_repl_offset`: on a replica, what it received from its primary)."""
    return _as_admin(f"{_cli(address, port)} INFO replication | tr -d '\\r' "
                     "| awk -F: '$1 == \"master_repl_offset\" {print $2; found = 1} END {exit !found}'", auth_file)


def promote(address: str, port: int, auth_file: str = ADMIN_AUTH) -> str:
    """Make the instance a primary (REPLICAOF NO ONE: it keeps its data and takes writes), then
    check it says so."""
    cli = _cli(address, port)
    return _as_admin(f'out=$({cli} REPLICAOF NO ONE) && [ "$out" = OK ] || {{ echo "$out"; false; }}; '
                     f"{cli} INFO replication | tr -d '\\r' | grep -qx role:master "
                     "|| { echo 'still a replica after REPLICAOF NO ONE'; false; }", auth_file)


def drop_feeds(address: str, port: int, auth_file: str = ADMIN_AUTH) -> str:
    """UNLINK every feed (SCAN, in batches) and print how many there were: each is rebuilt from
    the shards when next read (app/feed.py), so none keeps a push the failover lost."""
    cli = _cli(address, port)
    return _as_admin(f"{cli} --scan --pattern '{FEED_PATTERN}' | xargs -r -n {UNLINK_BATCH} {cli} UNLINK "
                     "| awk '{n += $1} END {print n + 0}'", auth_file)
