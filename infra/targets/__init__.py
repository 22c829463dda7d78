"""Where a stack runs, behind one interface: `Target`, with one implementation per target.

`target_of(config)` and, for the config parser before there is a Target, `kinds.rules_for(kind)`
(each kind's config rules and defaults) are the only reads of `photostack:target`; everything
else asks the Target what the difference is (its hosts and how to reach them, where records,
secrets and shared operations state are stored, where the dashboards are, which addresses and
ports nodes use, what hosts are like). The lab is not a third implementation: it is the AWS target pointed at local endpoints
(`AWS_ENDPOINT_URL`).
tests/model/test_target_seam.py fails on a read of the target kind anywhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar

from infra.config import StackConfig
from infra.inventory import Host
from infra.targets.aws import AwsTarget
from infra.targets.onebox import OneBoxTarget

if TYPE_CHECKING:
    from infra.records import Record
    from infra.secrets import SecretStore
    from infra.secrets_store import SsmSecrets
    from infra.shardstore import ShardMapStore

T = TypeVar("T")


class Target(Protocol):
    """What differs between the places a stack runs."""

    name: str
    """The kind, as `photostack:target` spells it: for messages and reports only."""
    config: StackConfig

    # --- hosts -------------------------------------------------------------------------------
    def hosts(self, stack: str) -> list[Host]:
        """The stack's hosts as they are now."""
        ...

    def ssh_files(self, stack: str, state: Path) -> tuple[Path | None, Path]:
        """(the client key or None for the agent's, the known_hosts file) to reach the hosts."""
        ...

    def open_access(self, stack: str, state: Path) -> None:
        """Make the hosts reachable before a command that changes them (nothing where they are
        reachable already)."""
        ...

    def close_access(self, stack: str, state: Path) -> None:
        """Stop what `open_access` started."""
        ...

    def replaces_machines(self) -> bool:
        """Whether a node is replaced by a new machine (`ops replace-node` relaunches its
        instance), or only restarted where it is."""
        ...

    def power_off(self, stack: str, machine: str) -> str | None:
        """Fence a machine (a host by name; on AWS its node's) through the provider, whatever
        state its network is in: a hard power-off, waited for until it is off. What was done, or
        None where the target has no such power (the one-box is this machine)."""
        ...

    def power_on(self, stack: str, machine: str) -> str | None:
        """Start a machine `power_off` (or anyone) stopped, waited for until it runs; what was
        done, or None when it runs already or the target has no such power."""
        ...

    def provisioned_by_pulumi(self) -> bool:
        """Whether the Pulumi program creates this stack's resources (else `ops up` converges
        existing hosts and there is no cloud plan)."""
        ...

    # --- records, secrets and shared operations state ---------------------------------------
    def record(self, stack: str, name: str) -> Record:
        """The small operational record `name` of the stack (infra/records.py)."""
        ...

    def shard_map_store(self, stack: str) -> ShardMapStore:
        """The store of the stack's one shard map."""
        ...

    def secret_store(self, stack: str, fill: bool = True) -> SecretStore | SsmSecrets:
        """The stack's secrets as the operator reads and writes them (`ops secret rotate`); with
        `fill`, ready for a command (what the target generates is generated, every secret the
        config needs is there); without, read as they are."""
        ...

    def shared(self, stack: str, local: Callable[[Path], T], cloud: Callable[[Callable[[str], Any]], T]) -> T:
        """A store every operator of the stack shares (lock, silences, audit trail): `local(state
        dir)` where they share this machine, `cloud(client)` (a boto3 client per service name)
        where they share a cloud account."""
        ...

    def operators_share_machine(self) -> bool:
        """Whether the stack's operators and its monitoring host are this machine (so, e.g., its
        alert store is readable here)."""
        ...

    # --- where nodes and pages are -----------------------------------------------------------
    def dashboard_base_url(self) -> str:
        """Where the stack's dashboards are (/munin/ and /wallboard/ hang below it)."""
        ...

    def bind_address(self, host: Host) -> str:
        """The address services on `host` bind to."""
        ...

    def address(self, host: Host) -> str:
        """The address peers use to reach a node on `host`."""
        ...

    def port(self, role: str, index: int = 0) -> int:
        """The port the node `index` of `role` listens on (a co-located service such as
        pgbouncer: index 0)."""
        ...

    def port_span(self, role: str) -> range:
        """Every port a node of `role` may take on this stack's hosts, whatever the fleet's size:
        what a host keeps out of the ephemeral range, so that a fleet that grows (`ops shard add`)
        changes nothing on the hosts already there."""
        ...

    # --- what hosts are like (what roles install and how) ------------------------------------
    def one_machine(self) -> bool:
        """Whether every node runs on this one machine: services reach each other on loopback,
        share its memory, and its clock is kept by whoever runs the machine."""
        ...

    def systemd_hosts(self) -> bool:
        """Whether hosts boot systemd (timers and Debian's cron service schedule jobs); else
        photostack's own daemons do."""
        ...

    def object_storage(self) -> bool:
        """Whether media and backups go to object storage (S3 buckets), else to local disks."""
        ...

    def data_device(self, host: Host) -> str | None:
        """The block device of `host`'s own data volume, named as the host sees it; None where
        its data stays on the disk it boots from."""
        ...

    def private_networks(self) -> list[str]:
        """Where the stack's own hosts connect from (CIDRs)."""
        ...

    def load_balancer_networks(self) -> list[str]:
        """Where a load balancer in front of nginx connects from (CIDRs); [] without one."""
        ...


def target_of(config: StackConfig) -> Target:
    """The Target of a stack config (the one read of `photostack:target`)."""
    return OneBoxTarget(config) if config.target == "onebox" else AwsTarget(config)
