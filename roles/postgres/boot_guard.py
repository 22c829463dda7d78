"""The start guard of a Postgres cluster on a systemd host: a former primary never starts again as
a second primary.

A failover fences the old primary by powering its machine off through the provider (ops/failover.py):
its data dir is left as it was, with no standby.signal. When that machine is started again —
by an operator, by EC2's own recovery, or by `ops rebuild-replica` — its cluster would come back as
a primary and take any write that still reaches it. So every start of a cluster's unit
(`postgresql@<version>-<name>`, whose drop-in the postgres role renders) runs this first, as the
postgres user, from the host's ops venv:

- a standby (standby.signal present) starts: it takes no writes;
- the member the stored primaries record names as its shard's primary starts;
- any other member with a data dir is fenced here, as `commands.fence` does over SSH: its data dir
  moves aside to `<data dir>.fenced`, and the unit does not start (exit FENCED) until
  `ops rebuild-replica` rebuilds it as a replica;
- when the record cannot be read, it asks again for RECORD_PATIENCE_S, then the unit fails: a
  cluster that cannot tell whether it is still the primary does not take writes (two primaries
  would lose some; a primary down is an outage the health checks page for).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

from roles.postgres.commands import FENCED_SUFFIX

FENCED = 3  # the unit's RestartPreventExitStatus: no automatic start of a fenced cluster
RECORD_PATIENCE_S = 120.0
RECORD_RETRY_S = 5.0


def stored_primary(stack: str, shard: int) -> int:
    """The member the stack's primaries record names for `shard`, asked again while it cannot be
    read (the host's network or the provider's API may come up after the cluster's unit)."""
    from infra.config import load_stack_config
    from infra.shardstore import stored_primaries

    deadline = time.monotonic() + RECORD_PATIENCE_S
    while True:
        try:
            return stored_primaries(load_stack_config(stack), stack).of(shard).primary
        except Exception as exc:  # noqa: BLE001 — any failure to read is a retry, then the unit's failure
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot read the primaries record of stack {stack}: {exc}") from exc
            time.sleep(RECORD_RETRY_S)


def guard(stack: str, shard: int, member: int, data_dir: str) -> int:
    """0 when the cluster may start; FENCED after moving a former primary's data dir aside (or
    finding it moved); 1 when the record cannot be read. Prints one line saying why."""
    name = os.path.basename(data_dir)
    has_data = os.path.isfile(os.path.join(data_dir, "PG_VERSION"))
    if not has_data and os.path.isdir(data_dir + FENCED_SUFFIX):
        print(f"{name}: fenced (its data dir is {data_dir}{FENCED_SUFFIX}); run `ops rebuild-replica --shard {shard}`",
              file=sys.stderr)
        return FENCED
    standby = os.path.isfile(os.path.join(data_dir, "standby.signal"))
    if not has_data or standby:
        return 0
    try:
        primary = stored_primary(stack, shard)
    except RuntimeError as exc:
        print(f"{name}: not started: {exc}", file=sys.stderr)
        return 1
    if member == primary:
        return 0
    shutil.rmtree(data_dir + FENCED_SUFFIX, ignore_errors=True)
    os.rename(data_dir, data_dir + FENCED_SUFFIX)
    print(f"{name}: member {member} of shard {shard} was primary, the stored primary is member {primary}: fenced "
          f"(data dir moved to {data_dir}{FENCED_SUFFIX}); run `ops rebuild-replica --shard {shard}`", file=sys.stderr)
    return FENCED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack")
    parser.add_argument("shard", type=int)
    parser.add_argument("member", type=int)
    parser.add_argument("data_dir")
    args = parser.parse_args(argv)
    return guard(args.stack, args.shard, args.member, args.data_dir)


if __name__ == "__main__":
    sys.exit(main())
