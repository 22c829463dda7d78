"""Memory settings of a Postgres cluster, derived from the RAM of the host it runs on."""

from __future__ import annotations

import os

from roles.context import RoleContext

# Memory of the EC2 types a database host may use (MiB, as AWS publishes them).
INSTANCE_MEMORY_MB = {
    f"{family}.{size}": gib * 1024
    for family, per_vcpu in (("r5", 8), ("r6i", 8), ("r7i", 8), ("m5", 4), ("m6i", 4), ("m7i", 4))
    for size, gib in (
        ("large", 2 * per_vcpu), ("xlarge", 4 * per_vcpu), ("2xlarge", 8 * per_vcpu),
        ("4xlarge", 16 * per_vcpu), ("8xlarge", 32 * per_vcpu), ("12xlarge", 48 * per_vcpu),
        ("16xlarge", 64 * per_vcpu),
    )
} | {"t3.medium": 4096, "t3.large": 8192, "t3.xlarge": 16384, "t3.2xlarge": 32768}


def host_memory_mb(ctx: RoleContext) -> int:
    """RAM of the host: this machine for the one-box, the instance type's on AWS."""
    if ctx.target.one_machine():
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
    kind = ctx.config.postgres.instance_type
    if kind not in INSTANCE_MEMORY_MB:
        raise ValueError(
            f"photostack:postgres.instanceType: {kind} has no known memory size "
            f"(known: {', '.join(sorted(INSTANCE_MEMORY_MB))})"
        )
    return INSTANCE_MEMORY_MB[kind]


def memory_settings(memory_mb: int, clusters: int, share: float, max_connections: int) -> dict[str, str]:
    """The usual starting points: shared_buffers 25 % and effective_cache_size 75 % of the memory a
    cluster may use (`share` of the host divided among its `clusters`); work_mem so that every
    connection sorting at once still fits in the remaining quarter."""
    budget = max(256, int(memory_mb * share / clusters))
    return {
        "shared_buffers": f"{budget // 4}MB",
        "effective_cache_size": f"{budget * 3 // 4}MB",
        "maintenance_work_mem": f"{min(2048, max(64, budget // 20))}MB",
        "work_mem": f"{max(4, budget // 4 // max_connections)}MB",
        "wal_buffers": "16MB",
    }
