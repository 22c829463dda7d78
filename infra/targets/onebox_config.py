"""What a stack config must say on the one-box target, and what it defaults to: every node on
this one machine, so each service gets its own ports on one address and the whole stack fits in
its memory.

Read by the config parser through infra/targets/kinds.py, before there is a Target to ask.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from infra.config_checks import Problems

if TYPE_CHECKING:
    from infra.config import StackConfig

# One-box ports the roles use whatever the config says (roles/rabbitmq/defaults.yaml, Erlang's epmd).
FIXED_ONEBOX_PORTS = {"epmd": 4369, "rabbitmq distribution": 25672}


class OneBoxRules:
    """The one-box target's config rules."""

    # The one-box is Debian 12, whose archive has PostgreSQL 15.
    distro_postgres_major = 15
    checks_aws_names = False
    secrets_in_stack_file = False

    def plain_secret_problem(self, name: str, value: Any) -> str | None:
        """A secret key in the stack file is always wrong here: one-box secrets live in the state dir."""
        return f"one-box secrets live in the state dir; set it with `ops secret set {name}`"

    def own_secrets(self, config: StackConfig) -> list[str]:
        """The secrets only this target needs: the integrations' keys the user sets (on AWS the
        program makes them)."""
        return [name for name, on in (("pagerdutyRoutingKey", config.alerting.pagerduty),
                                      ("sentryDsn", config.alerting.sentry)) if on]

    def problems(self, config: StackConfig) -> Problems:
        """Every rule of the one-box target's own."""
        return onebox_ports(config) + onebox_size(config)


def onebox_ports(config: StackConfig) -> Problems:
    """One-box services each get their own port range on the one address: within 1024–65535, no overlaps."""
    box, pg = config.onebox, config.postgres
    ranges = [
        ("sshPort", "sshd", box.ssh_port, 1),
        ("httpPort", "nginx", box.http_port, 1),
        ("appBasePort", "gunicorn", box.app_base_port, config.fleets.app.count),
        ("postgresBasePort", "postgres", box.postgres_base_port, pg.physical_shards * (pg.replicas_per_shard + 1)),
        ("pgbouncerPort", "pgbouncer", box.pgbouncer_port, 1),
        ("redisBasePort", "redis", box.redis_base_port, config.redis.replicas + 1),
        ("memcachedBasePort", "memcached", box.memcached_base_port, config.memcached.count),
        ("rabbitmqPort", "rabbitmq", box.rabbitmq_port, 1),
        ("muninNodePort", "munin-node", box.munin_node_port, 1),
    ]
    problems: Problems = []
    placed: list[tuple[str, str, int, int]] = [(f"fixed port {p}", name, p, p) for name, p in FIXED_ONEBOX_PORTS.items()]
    for key, name, first, count in ranges:
        if count < 1:
            continue
        last = first + count - 1
        span = f"{first}" if count == 1 else f"{first}–{last}"
        if last > 65535:
            problems.append((f"onebox.{key}", f"{name} needs ports {span}, beyond 65535"))
            continue
        for other_key, other_name, other_first, other_last in placed:
            if first <= other_last and other_first <= last:
                other_span = f"{other_first}" if other_first == other_last else f"{other_first}–{other_last}"
                where = other_key if other_key.startswith("fixed") else f"photostack:onebox.{other_key}"
                problems.append((f"onebox.{key}", f"{name} port(s) {span} overlap {other_name} {other_span} ({where})"))
                break
        placed.append((key, name, first, last))
    return problems


# The one-box runs every node on this machine: bounds far above the shipped one-box, far below a typo.
ONEBOX_MAX_NODES_PER_ROLE = 64
ONEBOX_MAX_PROCESSES = 64


def onebox_size(config: StackConfig) -> Problems:
    """What one machine can hold: bounded node and process counts, caches within its memory."""
    problems: Problems = []
    pg = config.postgres
    counts = [(f"fleets.{tier}.count", getattr(config.fleets, tier).count) for tier in ("nginx", "app", "worker")]
    counts += [("postgres.physicalShards", pg.physical_shards * (pg.replicas_per_shard + 1)),
               ("memcached.count", config.memcached.count), ("redis.replicas", config.redis.replicas + 1)]
    problems += [(key, f"{count} nodes of one role on the one-box (one machine); at most {ONEBOX_MAX_NODES_PER_ROLE}")
                 for key, count in counts if count > ONEBOX_MAX_NODES_PER_ROLE]
    problems += [(f"fleets.{tier}.processes", f"{getattr(config.fleets, tier).processes} processes per node on the "
                  f"one-box; at most {ONEBOX_MAX_PROCESSES}")
                 for tier in ("nginx", "app", "worker") if getattr(config.fleets, tier).processes > ONEBOX_MAX_PROCESSES]
    memory_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1 << 20)
    caches_mb = (config.redis.replicas + 1) * config.redis.maxmemory_mb + config.memcached.count * config.memcached.memory_mb
    if caches_mb > memory_mb:
        problems.append(("redis.maxmemoryMb", f"Redis and Memcached would take {caches_mb} MiB on the one-box; "
                                              f"this machine has {memory_mb} MiB"))
    return problems
