"""pgBackRest commands of the postgres role and of `ops backup`/`ops restore`: built here as
strings (pure), run elsewhere (the engine, ops/remote.py).

One stanza per physical shard, named like its database (`shard<n>`). pgBackRest runs as
postgres from `/` (postgres cannot enter root's home, the directory SSH commands start in).
"""

from __future__ import annotations

import shlex

from roles.postgres.cluster import Cluster

CONFIG = "/etc/pgbackrest/pgbackrest.conf"
REPO_PATH = "/var/lib/pgbackrest"  # the one-box's repository (on AWS: the backup bucket)
LOG_PATH = "/var/log/pgbackrest"
BACKUP_SCRIPT = "/usr/local/sbin/photostack-backup"

# `pgbackrest info` status code (its documented JSON output) of a stanza with backups.
INFO_OK = 0

# Python run on the host to read one stanza's `info --output=json` status code (no jq needed).
_STATUS_CODE = "import json,sys; d=json.load(sys.stdin); print(d[0]['status']['code'] if d else 1)"


def stanza(cluster: Cluster) -> str:
    """The pgBackRest stanza of a cluster's physical shard."""
    return cluster.database


def pgbackrest(*args: str) -> str:
    """pgbackrest as postgres, from /."""
    return "(cd / && runuser -u postgres -- pgbackrest " + " ".join(shlex.quote(a) for a in args) + ")"


def archive_command(cluster: Cluster) -> str:
    """postgresql.conf archive_command: push each finished segment of *this* cluster (its own data
    dir: %p is relative to it, and the config's pg1 may be another member of the shard)."""
    return f"pgbackrest --stanza={stanza(cluster)} --pg1-path={cluster.data_dir} archive-push %p"


def restore_command(cluster: Cluster) -> str:
    """postgresql.conf restore_command: fetch a segment or history file from the archive."""
    return f'pgbackrest --stanza={stanza(cluster)} --pg1-path={cluster.data_dir} archive-get %f "%p"'


def status_code(cluster: Cluster) -> str:
    """Print the stanza's `info` status code (1 when the stanza is missing)."""
    info = pgbackrest(f"--stanza={stanza(cluster)}", "--output=json", "info")
    return f"{info} 2>/dev/null | python3 -c {shlex.quote(_STATUS_CODE)}"


def has_backup(cluster: Cluster, local_repo: str | None = None) -> str:
    """Succeeds when the shard has at least one good backup (so its stanza exists too). With a
    local repository, a look at its backup.info (instant: every no-op converge runs this check);
    else `pgbackrest info` (~0.1 s)."""
    if local_repo:
        return f"grep -q '^[0-9]\\{{8\\}}-[0-9]\\{{6\\}}F' {local_repo}/backup/{stanza(cluster)}/backup.info"
    return f'[ "$({status_code(cluster)})" = {INFO_OK} ]'


def stanza_create(cluster: Cluster) -> str:
    """Create the shard's stanza (idempotent in pgBackRest: an existing matching stanza is fine)."""
    return pgbackrest(f"--stanza={stanza(cluster)}", "stanza-create")


def backup(cluster: Cluster, kind: str) -> str:
    """A backup of the shard (`full`, `diff` or `incr`; pgBackRest makes it full when there is no
    full backup yet), then expire what retention no longer keeps (backup does that itself)."""
    return pgbackrest(f"--stanza={stanza(cluster)}", f"--type={kind}", "backup")


def check(cluster: Cluster) -> str:
    """`pgbackrest check` against the primary: switches WAL and waits until that segment is in the
    archive — afterwards everything committed before the check started is archived (and after a
    promotion, the new timeline's history file with it)."""
    return pgbackrest(f"--stanza={stanza(cluster)}", "check")


def info_json(stanza_name: str) -> str:
    """The repository's view of one stanza (backups, their sizes and times, WAL archived)."""
    return pgbackrest(f"--stanza={stanza_name}", "--output=json", "info")


def restore(cluster: Cluster, data_dir: str, target: str | None, target_kind: str, delta: bool,
            timeline: int | None = None) -> str:
    """Restore the shard's latest suitable backup into `data_dir`, replaying archived WAL up to
    `target` (a time or a restore point name; None = the end of the archive), then promote.

    `timeline`: the primary's current one, whose history (in the archive) leads through every
    failover and earlier restore to it — a target before a switch is reached on the older
    timeline on the way. Not `latest`: a cluster that ever promoted by mistake archived a higher
    timeline that is no part of the shard's history. None (no primary to ask): `latest`.
    """
    args = [f"--stanza={stanza(cluster)}", f"--pg1-path={data_dir}", f"--target-timeline={timeline or 'latest'}"]
    if target is not None:
        args += [f"--type={target_kind}", f"--target={target}", "--target-action=promote"]
    if delta:
        args.append("--delta")
    return pgbackrest(*args, "restore")


# The name of the WAL segment a replica is receiving now (unfinished), on its current timeline:
# the segment files before it in pg_wal are finished; after it may be recycled, unwritten files.
_RECEIVING_SEGMENT = """
WITH s AS (SELECT setting::bigint AS size FROM pg_settings WHERE name = 'wal_segment_size'),
     p AS (SELECT pg_wal_lsn_diff(coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), '0/0')::bigint
                  / s.size AS segno, 4294967296 / s.size AS per_id,
                  lpad(to_hex((SELECT timeline_id FROM pg_control_checkpoint())), 8, '0') AS tli FROM s)
SELECT upper(tli || lpad(to_hex(segno / per_id), 8, '0') || lpad(to_hex(segno % per_id), 8, '0')) FROM p"""


# How many finished segments a failover pushes at most (newest first): the old primary's archive
# lag is watched (postgres_archive.ready_segments warns at 8), and each push costs write outage.
PUSH_AT_MOST = 8


def push_finished_wal(replica: Cluster, receiving_query: str, at_most: int = PUSH_AT_MOST) -> str:
    """Before a replica is promoted: push the newest finished segments of its timeline it holds
    in pg_wal (at most `at_most`).

    A primary that fails may not have archived its last finished segments; the replica received
    them (synchronously), so pushing them closes that gap. pgBackRest accepts a segment already in
    the archive with the same checksum; one there with another checksum (a standby's copy may
    differ from the primary's in the unused tail of a switched segment) is already archived too.
    `receiving_query` is the command printing the segment being received (`psql_value` of
    `RECEIVING_SEGMENT`, built by the caller, which owns psql).
    """
    wal = f"{replica.data_dir}/pg_wal"
    push = f"runuser -u postgres -- pgbackrest --stanza={stanza(replica)} --pg1-path={replica.data_dir} archive-push"
    return (
        "cd /\n"
        f"current=$( {receiving_query} ) && [ -n \"$current\" ] || {{ echo 'cannot read the receive position' >&2; exit 1; }}\n"
        f"for f in $(ls {wal} | grep -E '^[0-9A-F]{{24}}$' | LC_ALL=C sort); do\n"
        # Same timeline (first 8 hex digits), and before the segment being received.
        "    [ \"${f%????????????????}\" = \"${current%????????????????}\" ] || continue\n"
        "    [ \"$f\" != \"$current\" ] && [ \"$(printf '%s\\n%s\\n' \"$f\" \"$current\" | LC_ALL=C sort | head -n 1)\" = \"$f\" ] && echo \"$f\"\n"
        f"done | tail -n {at_most} | while read -r f; do\n"
        f"    out=$({push} {wal}/$f 2>&1) || echo \"$out\" | grep -q 'already exists' || {{ echo \"$out\" >&2; exit 1; }}\n"
        "done"
    )


RECEIVING_SEGMENT = _RECEIVING_SEGMENT.strip()
