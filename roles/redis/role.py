"""redis: a primary and its replicas, persistence on the replicas only. Install → configure
(one config per instance) → service (one per instance; the package's default one stays off)."""

from __future__ import annotations

from roles.engine.context import RoleContext, double_quoted
from roles.engine.resources import (
    DesiredState,
    Directory,
    File,
    Handler,
    Packages,
    Service,
    package_daemon_held,
)
from roles.redis.acl import ADMIN_USER, acl_rules


def desired(ctx: RoleContext) -> DesiredState:
    d = ctx.defaults("redis")
    nodes = ctx.host.nodes_of("redis")
    primary = next(n for h in ctx.hosts for n in h.nodes_of("redis") if n.attrs["replica"] == 0)
    state = DesiredState(
        resources=[
            Packages(("redis-server",)),
            # The package's own instance (redis.conf, 6379) would collide with ours.
            package_daemon_held("redis-server", _conf(ctx.port(nodes[0])), keep_off=True),
            Directory("/run/redis", owner="redis", group="redis", mode=0o2775),
        ]
    )
    for node in nodes:
        port = ctx.port(node)
        conf = _conf(port)
        pidfile = f"/run/redis/redis-{port}.pid"
        data_dir = f"/var/lib/redis/{port}"
        restart = f"restart redis {port}"
        content = ctx.template(
            "redis",
            "redis.conf.j2",
            bind=ctx.bind_address,
            port=port,
            pidfile=pidfile,
            data_dir=data_dir,
            acl=acl_rules(ctx.secret("redisPassword"), ctx.secret("redisAdminPassword"), d["redis_munin_keys"]),
            admin_user=ADMIN_USER,
            admin_password=double_quoted(ctx.secret("redisAdminPassword")),
            primary=None if node == primary else f"{ctx.address(primary)} {ctx.port(primary)}",
        )
        service = Service.daemon(
            f"redis {port}", f"redis-server@{port}", f"runuser -u redis -- redis-server {conf}", pidfile
        )
        state.resources += [
            Directory(data_dir, owner="redis", group="redis", mode=0o750),
            File(conf, content, owner="redis", group="redis", mode=0o640, sensitive=True, notify=(restart,)),
            service,
        ]
        # Redis cannot re-read its config file; a changed config means a restart.
        state.handlers.append(Handler(restart, f"{{ {service.stop}; }} && {{ {service.start}; }}"))
    return state


def _conf(port: int) -> str:
    return f"/etc/redis/redis-{port}.conf"
