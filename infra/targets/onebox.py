"""The one-box target: every node of the stack on this machine, reached over SSH on loopback
through photostack's own sshd; records, secrets and shared state are files in the state dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, TypeVar

from infra import onebox
from infra.atomic_file import write_atomic
from infra.config import ConfigError, StackConfig
from infra.inventory import Host, onebox_hosts
from infra.secrets import SecretStore
from infra.sharding import SHARDMAP_FILE, ShardMap
from infra.state import state_dir
from infra.targets.onebox_config import ONEBOX_MAX_NODES_PER_ROLE

T = TypeVar("T")


class FileRecord:
    """A JSON file, replaced atomically."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> Any:
        return json.loads(self.path.read_text()) if self.path.exists() else None

    def save(self, value: Any) -> None:
        write_atomic(self.path, json.dumps(value, sort_keys=True))


class FileShardMapStore:
    """The one-box store: a JSON file in the state dir."""

    def __init__(self, path: Path):
        self.path = path

    def load_or_create(self, config: StackConfig) -> ShardMap:
        return ShardMap.load_or_create(self.path, config)

    def load(self) -> ShardMap | None:
        return ShardMap.from_json(self.path.read_text()) if self.path.exists() else None

    def check(self, config: StackConfig) -> ShardMap | None:
        """Raise one line per count the config states differently from the stored map (if any);
        the stored map otherwise."""
        stored = self.load()
        if stored is not None and (problems := stored.disagreements(config, str(self.path))):
            raise ConfigError(problems)
        return stored

    def save(self, shard_map: ShardMap) -> None:
        write_atomic(self.path, shard_map.to_json())


class OneBoxTarget:
    """The one-box (infra/targets/__init__.py says what each method answers)."""

    name = "onebox"

    def __init__(self, config: StackConfig):
        self.config = config

    def hosts(self, stack: str) -> list[Host]:
        return onebox_hosts(self.config)

    def ssh_files(self, stack: str, state: Path) -> tuple[Path | None, Path]:
        paths = onebox.ssh_paths(state)
        return paths.client_key, paths.known_hosts

    def open_access(self, stack: str, state: Path) -> None:
        onebox.prepare(self.config, state)

    def close_access(self, stack: str, state: Path) -> None:
        onebox.stop_sshd(onebox.ssh_paths(state))

    def replaces_machines(self) -> bool:
        return False  # the one machine is this one

    def power_off(self, stack: str, machine: str) -> str | None:
        return None  # the one machine is this one: its nodes are fenced by their own commands

    def power_on(self, stack: str, machine: str) -> str | None:
        return None

    def provisioned_by_pulumi(self) -> bool:
        return False

    def record(self, stack: str, name: str) -> FileRecord:
        return FileRecord(state_dir(stack) / f"{name}.json")

    def shard_map_store(self, stack: str) -> FileShardMapStore:
        return FileShardMapStore(state_dir(stack) / SHARDMAP_FILE)

    def secret_store(self, stack: str, fill: bool = True) -> SecretStore:
        # The one-box generates its service passwords on first use; the user sets the rest.
        store = SecretStore.for_stack(stack)
        if fill:
            store.ensure_generated()
            store.check(self.config)
        return store

    def shared(self, stack: str, local: Callable[[Path], T], cloud: Callable[[Callable[[str], Any]], T]) -> T:
        return local(state_dir(stack))

    def operators_share_machine(self) -> bool:
        return True

    def dashboard_base_url(self) -> str:
        return f"http://{self.config.onebox.address}:{self.config.onebox.http_port}"

    def bind_address(self, host: Host) -> str:
        return self.config.onebox.address

    def address(self, host: Host) -> str:
        return self.config.onebox.address

    def one_machine(self) -> bool:
        return True

    def systemd_hosts(self) -> bool:
        return False  # the one-box is a container with no init system

    def object_storage(self) -> bool:
        return False

    def data_device(self, host: Host) -> str | None:
        return None  # this machine's own disks, as they are

    def private_networks(self) -> list[str]:
        return [f"{self.config.onebox.address}/32"]

    def load_balancer_networks(self) -> list[str]:
        return []

    def port(self, role: str, index: int = 0) -> int:
        # Every node shares the loopback address, so each gets its own port from the config's ranges.
        box = self.config.onebox
        offsets = {
            "nginx": (box.http_port, 0),
            "app": (box.app_base_port, 1),
            "postgres": (box.postgres_base_port, 1),
            "redis": (box.redis_base_port, 1),
            "memcached": (box.memcached_base_port, 1),
            "rabbitmq": (box.rabbitmq_port, 0),
            "munin_node": (box.munin_node_port, 0),
            "pgbouncer": (box.pgbouncer_port, 0),
        }
        base, step = offsets[role]
        return base + step * index

    def port_span(self, role: str) -> range:
        first, last = self.port(role, 0), self.port(role, ONEBOX_MAX_NODES_PER_ROLE - 1)
        return range(first, last + 1)
