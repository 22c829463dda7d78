"""redis: a primary and its replicas, persistence on the replicas only. Install → configure
(per instance: a config, its replication file and an ACL file) → service (one per instance; the
package's default one stays off). Which node is primary is the stack's `redis` record
(roles/redis/primary.py; `ops redis-failover` changes it). A changed ACL file is re-read in place
(`ACL LOAD` as the admin login, whose password the handler reads from a root-only file): rotating
the app's password restarts nothing; a changed replication file is applied in place too
(`CONFIG SET`, `REPLICAOF`): a failover restarts nothing, since a restarted primary, which keeps
no data on disk, would come back empty and its replicas would copy the emptiness."""

from __future__ import annotations

from roles.context import RoleContext, double_quoted
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
from roles.redis.primary import primary_node


def desired(ctx: RoleContext) -> DesiredState:
    d = ctx.defaults("redis")
    nodes = ctx.host.nodes_of("redis")
    primary = primary_node(ctx.config, ctx.stack)
    state = DesiredState(
        resources=[
            Packages(("redis-server",)),
            # The package's own instance (redis.conf, 6379) would collide with ours.
            package_daemon_held("redis-server", _conf(ctx.port(nodes[0])), keep_off=True),
            Directory("/run/redis", owner="redis", group="redis", mode=0o2775),
            # Only root (the handlers) reads it: redis-cli takes it from the environment, never argv.
            File(ADMIN_AUTH, ctx.secret("redisAdminPassword"), mode=0o600, sensitive=True),
        ]
    )
    acl = "\n".join(acl_rules(ctx.accepted("redisPassword"), ctx.secret("redisAdminPassword"),
                              d["redis_munin_keys"])) + "\n"
    for node in nodes:
        port = ctx.port(node)
        conf = _conf(port)
        pidfile = f"/run/redis/redis-{port}.pid"
        data_dir = f"/var/lib/redis/{port}"
        restart = f"restart redis {port}"
        reload_acl = f"reload redis {port} ACL"
        apply = f"apply redis {port} replication"
        aclfile = f"/etc/redis/users-{port}.acl"
        replication_file = replication_path(port)
        content = ctx.template(
            "redis", "redis.conf.j2", bind=ctx.bind_address, port=port, pidfile=pidfile, data_dir=data_dir,
            aclfile=aclfile, replication_file=replication_file,
        )
        replication = ctx.template(
            "redis", "replication.conf.j2", port=port, admin_user=ADMIN_USER,
            admin_password=double_quoted(ctx.secret("redisAdminPassword")),
            primary=None if node == primary else f"{ctx.address(primary)} {ctx.port(primary)}",
        )
        service = Service.daemon(
            f"redis {port}", f"redis-server@{port}", f"runuser -u redis -- redis-server {conf}", pidfile
        )
        state.resources += [
            Directory(data_dir, owner="redis", group="redis", mode=0o750),
            File(aclfile, acl, owner="redis", group="redis", mode=0o640, sensitive=True, notify=(reload_acl,)),
            File(replication_file, replication, owner="redis", group="redis", mode=0o640, sensitive=True,
                 notify=(apply,)),
            File(conf, content, owner="redis", group="redis", mode=0o640, sensitive=True, notify=(restart,)),
            service,
        ]
        # Redis cannot re-read its config file; a changed config means a restart.
        state.handlers.append(Handler(restart, restarts=(service,)))
        state.handlers.append(Handler(apply, apply_replication(ctx.bind_address, port, replication_file)))
        # A restart just now has read the ACL file already; ACL LOAD again is harmless.
        state.handlers.append(Handler(reload_acl, acl_load(ctx.bind_address, port)))
    return state


ADMIN_AUTH = "/etc/redis/admin.auth"


def acl_load(address: str, port: int, auth_file: str = ADMIN_AUTH) -> str:
    """Re-read an instance's ACL file, as the admin login (password from `auth_file`, through the
    environment: nothing secret on the command line)."""
    return (f'out=$(REDISCLI_AUTH="$(cat {auth_file})" redis-cli --no-auth-warning --user {ADMIN_USER} '
            f"-h {address} -p {port} ACL LOAD 2>&1) && [ \"$out\" = OK ] || {{ echo \"$out\" >&2; false; }}")


def replication_path(port: int) -> str:
    """The file saying whether the instance on `port` is primary or whose replica (included by its config)."""
    return f"/etc/redis/replication-{port}.conf"


def apply_replication(address: str, port: int, path: str, auth_file: str = ADMIN_AUTH) -> str:
    """Apply replication file `path` to the running instance, as the admin login: `CONFIG SET` of
    each setting, then `REPLICAOF` (a replica's master credentials are set before it connects).
    An instance that just started (a restart handler before this one) is first waited for while
    it loads its data set (it answers LOADING meanwhile, up to LOAD_WAIT_S). The commands go to
    redis-cli on stdin, never on its command line (masterauth is a secret); any answer but OK
    fails the handler."""
    cli = f'REDISCLI_AUTH="$(cat {auth_file})" redis-cli --no-auth-warning --user {ADMIN_USER} -h {address} -p {port}'
    wait = (f"for _ in $(seq {LOAD_WAIT_S * 10}); do [ \"$({cli} PING 2>&1)\" = PONG ] && break; sleep 0.1; done")
    commands = (f"{{ grep -Ev '^(#|$|replicaof )' {path} | sed 's/^/CONFIG SET /'; "
                f"grep '^replicaof ' {path} | sed 's/^replicaof/REPLICAOF/'; }}")
    return (f'{wait}; out=$({commands} | {cli} 2>&1) && ! printf "%s\\n" "$out" | grep -qv "^OK" '
            f'|| {{ echo "$out" >&2; false; }}')


# How long a replication change waits for an instance loading its data set (a large AOF takes minutes).
LOAD_WAIT_S = 600


def _conf(port: int) -> str:
    return f"/etc/redis/redis-{port}.conf"
