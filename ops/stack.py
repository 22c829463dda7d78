"""A loaded stack: its config, inventory, secrets and SSH settings — what every `ops` command needs.

Loading reads and validates everything before any host is touched, so a bad config or a missing
secret stops a command with its one-line errors first.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from infra import host_layout, role_settings
from infra.config import ConfigError, StackConfig, load_stack_config
from infra.inventory import Host
from infra.records import readers
from infra.secrets import SecretStore
from infra.shardstore import shard_map_store
from infra.state import host_state_dir, state_dir
from infra.targets import Target, target_of
from roles.context import RoleContext
from roles.converge import host_state
from roles.engine.executor import HostResult, SshSettings, connect, converge_hosts, run_script
from roles.engine.resources import DesiredState, Service

if TYPE_CHECKING:
    from infra.secrets_store import SsmSecrets  # imports pulumi: only AWS stacks load it
    from monitoring.alerts.alert_pipeline import FlushResult
    from monitoring.alerts.alert_store import AlertReader

MONITORING_ROLE = "munin_master"


@dataclass
class Stack:
    """One stack, loaded."""

    name: str
    config: StackConfig

    @classmethod
    def load(cls, name: str, config_path: Path | None = None) -> Stack:
        return cls(name, load_stack_config(name, path=config_path))

    @classmethod
    def for_command(cls, name: str) -> Stack:
        """The stack an `ops` command works on: loaded, with the CLI's own errors going to Sentry."""
        stack = cls.load(name)
        # sentry_sdk costs ~0.05 s to import: only when the stack can have a DSN (same rule as
        # monitoring.integrations.sentry.dsn_for_stack: $PHOTOSTACK_SENTRY_DSN, or alerting.sentry on).
        if os.environ.get("PHOTOSTACK_SENTRY_DSN") or stack.config.alerting.sentry:
            from monitoring.integrations.sentry import init_for_stack

            init_for_stack(stack.name, stack.config, "ops")  # no-op without a DSN
        return stack

    @property
    def state(self) -> Path:
        return state_dir(self.name)

    @cached_property
    def target(self) -> Target:
        """Where the stack runs: everything that differs between targets is asked of it."""
        return target_of(self.config)

    @cached_property
    def secrets(self) -> SecretStore | SsmSecrets:
        """The stack's secrets, read (and on `ops secret rotate` written) where its target keeps
        them: the state dir on one-box, SSM Parameter Store (written by `pulumi up`) on AWS."""
        return self.target.secret_store(self.name)

    @property
    def secret_store(self) -> SecretStore | SsmSecrets:
        """Where `ops secret rotate` reads and writes this stack's secrets (the same store)."""
        return self.secrets

    def secret(self, name: str) -> str:
        """A secret by name; a missing one stops with ConfigError."""
        return self.secrets[name]

    def reload_secrets(self) -> None:
        """Read the secrets again on next use (another process changed them: `ops secret rotate`)."""
        self.__dict__.pop("secrets", None)

    def also_accepted(self, name: str) -> str | None:
        """The value servers accept besides secret `name`'s while it rotates (ops/rotation.py)."""
        return self.secret_store.also_accepted(name)

    def optional_secret(self, name: str) -> str | None:
        """A secret the stack may lack (e.g. `sentryAuthToken`): None when it is not set."""
        return self.secrets.get(name)

    @cached_property
    def hosts(self) -> list[Host]:
        """The stack's hosts: the one-box model, or the EC2 instances tagged with the stack."""
        return self.target.hosts(self.name)

    def forget_inventory(self) -> None:
        """Read the hosts (and pin their SSH host keys) again on next use: after a command stopped,
        started, launched or terminated instances (failover, rebuild-replica, replace-node)."""
        for cached in ("hosts", "ssh"):
            self.__dict__.pop(cached, None)

    local: bool = False  # converge this machine without SSH (an EC2 host at boot)

    @cached_property
    def ssh(self) -> SshSettings:
        if self.local:
            return SshSettings(local=True)
        key_file, known_hosts = self.target.ssh_files(self.name, self.state)
        return SshSettings(key_file=key_file, known_hosts=known_hosts)

    def alert_state(self, history: int | None = None) -> AlertReader:
        """The stack's alert state where its alert hooks keep it: this machine's state dir on the
        one-box; on AWS its monitoring host's (`host_state_dir`), read in one SSH round trip that
        changes nothing there (here, only host keys get pinned, as for any SSH), with the last
        `history` log lines (None: all, 0: none). A host that cannot be read is ops.remote.StepFailed; no monitoring host is a ConfigError."""
        from monitoring.alerts.alert_store import AlertSnapshot, AlertStore, read_script

        if self.target.operators_share_machine():
            return AlertStore(self.state)
        from ops.remote import StepFailed, run_step

        host, what = self._monitoring_host(), "read the alert state"
        output = run_step(host, self.ssh, what, read_script(host_state_dir(self.name), history))
        try:
            return AlertSnapshot.parse(output)
        except ValueError as exc:
            raise StepFailed(f"{host.name}: {what} in {host_state_dir(self.name)}: {exc}") from None

    def _monitoring_host(self) -> Host:
        """The host whose alert hooks keep the stack's alert state (ConfigError without one)."""
        monitors = [h for h in self.hosts if MONITORING_ROLE in h.roles]
        if not monitors:
            raise ConfigError([f"stack '{self.name}': no running monitoring host ({MONITORING_ROLE}), "
                               "which keeps the alert state"])
        return monitors[0]

    def alert_host(self) -> str:
        """Where the stack's alert state is kept, for messages: this machine, or the monitoring host."""
        return "this machine" if self.target.operators_share_machine() else self._monitoring_host().name

    def flush_alerts(self) -> FlushResult:
        """Send the events waiting in the stack's alert spool, where its alert hooks keep it, through
        the pipeline they use: here on the one-box; on AWS on its monitoring host, over SSH as root
        with the host's own code, state, routing key and silences, as its hooks run (an empty
        environment, from /, `python -P`). Reaching the host fails as ops.remote.StepFailed."""
        from monitoring.alerts.alert_pipeline import AlertPipeline, FlushResult

        if self.target.operators_share_machine():
            return AlertPipeline.for_stack(self.name, self.config).flush_spool()
        from ops.remote import StepFailed, run_step

        host, what = self._monitoring_host(), "send the spooled alerts"
        # The code the host's hooks import (roles/munin_master: the stack may point it elsewhere).
        repo = role_settings.effective(MONITORING_ROLE, self.config.roles)["munin_master_repo"] or host_layout.BUNDLE_DIR
        output = run_step(host, self.ssh, what, _flush_script(self.name, repo))
        try:
            return FlushResult(**json.loads(output.strip().splitlines()[-1]))
        except (ValueError, TypeError, IndexError) as exc:
            raise StepFailed(f"{host.name}: {what}: unexpected answer ({exc})") from None

    def context(self, host: Host) -> RoleContext:
        return RoleContext(self.config, self.name, host, tuple(self.hosts), self.secret, self.also_accepted)

    def desired(self, host: Host, roles: set[str] | None = None) -> DesiredState:
        return host_state(self.context(host), roles)

    def check_shard_map(self) -> None:
        """Stop (exit 2) on a config stating other shard counts than the stored map, which owns them."""
        shard_map_store(self.config, self.name).check(self.config)

    def prepare(self, required: bool = False) -> None:
        """Before a command that changes hosts: make them reachable (the one-box's own sshd),
        with the shard map stored and the primaries the hosts really have recorded. A stack the
        Pulumi program provisions has all that from `pulumi up` and its hosts' boot: nothing to
        do, or an error when the command exists only for the other stacks (`required`)."""
        if self.target.provisioned_by_pulumi():
            if required:
                raise ConfigError([f"photostack:target: stack '{self.name}' is {self.target.name}; `pulumi up` provisions it"])
            return
        # Before anything starts: the map must agree with the config, and from here on it is stored.
        shard_map_store(self.config, self.name).load_or_create(self.config)
        self.target.open_access(self.name, self.state)
        self.adopt_primaries()

    def adopt_primaries(self) -> None:
        """With no stored primaries record (a fresh state dir) but clusters already on the host,
        record the primaries the host really has, so a converge never demotes a promoted replica
        or writes to a standby. A cluster is a standby when its data dir holds standby.signal."""
        from infra.shardstore import Primaries, ShardRole, primaries_store
        from roles.postgres.cluster import cluster_of

        store = primaries_store(self.config, self.name)
        if store.stored.load() is not None:
            return
        found: dict[int, ShardRole] = {}
        for host in self.hosts:
            clusters = [cluster_of(self.context(host), node) for node in host.nodes_of("postgres")]
            if not clusters:
                continue
            script = "".join(
                f"[ -f {c.data_dir}/PG_VERSION ] && ! [ -f {c.data_dir}/standby.signal ] && echo {c.shard} {c.replica}\n"
                for c in clusters
            )
            with connect(host, self.ssh) as conn:
                _, output = run_script(conn, host, script)
            primaries: dict[int, list[int]] = {}
            for line in output.splitlines():
                shard, member = map(int, line.split())
                primaries.setdefault(shard, []).append(member)
            # Only a shard whose original primary is now a standby needs a record.
            found.update({shard: ShardRole(primary=min(members)) for shard, members in primaries.items()
                          if 0 not in members})
        store.save(Primaries(found))  # recorded once: later commands read it instead of asking

    def converge(
        self, hosts: list[Host], roles: set[str] | None = None, check: bool = False,
        progress: Callable[[HostResult], None] | None = None,
    ) -> list[HostResult]:
        """Converge (or check) hosts in parallel; `progress` hears of each host as it finishes."""
        self.secrets  # noqa: B018 — fail on a missing secret before touching any host
        if not self.local:
            # The operator's edited config must agree with the stored map before any host is
            # touched. A host converging itself at boot runs the planned config, and may read the
            # map only if its roles render from it (its instance profile grants exactly that).
            self.check_shard_map()
        return converge_hosts(hosts, lambda h: self.desired(h, roles), self.ssh, check=check, progress=progress)

    def follow(self, *records: str, done: frozenset[str] = frozenset()) -> list[HostResult]:
        """Converge, wherever they run, the roles that render from `records` (infra/records.py
        `RENDERED_BY`) after an operation changed them, but those in `done` (converged already, or
        left for a later step): so a converge afterwards finds nothing the operation left behind."""
        roles = readers(*records) - done
        return self.converge([h for h in self.hosts if roles & set(h.roles)], roles)

    def services(self, host: Host, roles: set[str] | None = None) -> DesiredState:
        """Only the services of a host's roles (what `status` and `down` look at). A service's name
        and status command never depend on a secret's value, so none is read (or generated, on
        the one-box): `ops status` stays read-only and works without secrets."""
        context = RoleContext(self.config, self.name, host, tuple(self.hosts), _unread_secret)
        state = host_state(context, roles)
        return DesiredState(resources=[r for r in state.resources if isinstance(r, Service)])

    def stop_services(self, hosts: list[Host]) -> list[HostResult]:
        """Stop every service of the hosts' roles, last role first (data stays on disk)."""

        def stopped(host: Host) -> DesiredState:
            services = self.services(host).resources
            return DesiredState(resources=[replace(s, running=False) for s in reversed(services)])

        return converge_hosts(hosts, stopped, self.ssh)

    def close_access(self) -> None:
        """Stop what `prepare` started to reach the hosts (the one-box's own sshd)."""
        self.target.close_access(self.name, self.state)


def _flush_script(stack: str, repo: str) -> str:
    """The shell script that drains `stack`'s alert spool on its monitoring host with the code in
    `repo` and prints the FlushResult as JSON (the other paths are the host's: infra/host_layout.py)."""
    code = ("import dataclasses, json, sys; from monitoring.alerts.alert_pipeline import flush_alerts; "
            "print(json.dumps(dataclasses.asdict(flush_alerts(sys.argv[1]))))")
    return (f"cd / && exec /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin PYTHONPATH={shlex.quote(repo)} "
            f"PHOTOSTACK_STATE_DIR={host_layout.STATE_ROOT} "
            f"{host_layout.OPS_VENV}/bin/python -P -c {shlex.quote(code)} {shlex.quote(stack)}")


def _unread_secret(name: str) -> str:
    """Stands in for a secret where only the shape of the desired state is wanted."""
    return f"(secret {name} not read)"
