"""Shell commands the postgres role runs: built here as strings, run by the engine."""

from __future__ import annotations

import base64
import shlex

from infra.sharding import next_id_sql, schema_name
from roles.postgres.auth import APP_USER, REPLICATION_USER
from roles.postgres.cluster import PASSFILE, SOCKET_DIR, Cluster

# Where `fence` moves a failed primary's data dir (kept for forensics until the rebuild).
FENCED_SUFFIX = ".fenced"

# Setup statements must not wait for a synchronous replica that may not exist yet.
_LOCAL_COMMIT = "PGOPTIONS='-c synchronous_commit=local'"


def psql_path(version: int) -> str:
    """The versioned psql binary: /usr/bin/psql is Debian's Perl wrapper, which alone costs
    ~25 ms a call (a no-op converge runs a dozen checks through psql)."""
    return f"/usr/lib/postgresql/{version}/bin/psql"


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def psql(cluster: Cluster, sql: str, database: str = "postgres") -> str:
    """Run SQL as the postgres superuser over the local socket (SQL travels base64-encoded, so it
    may be large and hold any quote)."""
    payload = base64.b64encode(sql.encode()).decode()
    return (
        f"printf %s {payload} | base64 -d | runuser -u postgres -- env {_LOCAL_COMMIT} "
        f"{psql_path(cluster.version)} -X -q -v ON_ERROR_STOP=1 -h {SOCKET_DIR} -p {cluster.port} -d {database} -f -"
    )


def psql_value(cluster: Cluster, query: str, database: str = "postgres") -> str:
    """Print a one-value query's result, unaligned (run from / : postgres cannot enter root's home).
    The query goes on stdin (printf is a shell builtin): it may hold SCRAM verifiers, which must
    not show in `ps`."""
    payload = base64.b64encode(query.encode()).decode()
    return (f"(cd / && printf %s {payload} | base64 -d | runuser -u postgres -- {psql_path(cluster.version)} "
            f"-X -tA -h {SOCKET_DIR} -p {cluster.port} -d {database} -f -)")


def psql_is_true(cluster: Cluster, query: str, database: str = "postgres") -> str:
    """Succeeds when a boolean query returns true."""
    return f'[ "$({psql_value(cluster, query, database)} 2>/dev/null)" = t ]'


def create_cluster(cluster: Cluster) -> str:
    """pg_createcluster (unless its config already exists): data checksums, C.UTF-8, no trust."""
    conf = f"{cluster.config_dir}/postgresql.conf"
    return (
        f"[ -f {conf} ] || pg_createcluster {cluster.version} {cluster.name} --port {cluster.port} "
        f"--locale C.UTF-8 -- --data-checksums --auth-local=peer --auth-host=scram-sha-256"
    )


def ctl(cluster: Cluster, action: str) -> str:
    """pg_ctlcluster: hands over to systemctl where systemd runs, drives pg_ctl directly elsewhere."""
    return f"pg_ctlcluster {cluster.version} {cluster.name} {action}"


def running(cluster: Cluster) -> str:
    """Succeeds while the cluster's postmaster runs: the check `pg_ctl status` makes (the pid in
    postmaster.pid is alive), without starting pg_ctlcluster's Perl (~30 ms per cluster)."""
    return f'kill -0 "$(head -n 1 {cluster.data_dir}/postmaster.pid 2>/dev/null)"'


def reload_cluster(cluster: Cluster) -> str:
    """Reload the config; restart only when a changed setting needs it (e.g. shared_buffers)."""
    pending = psql_is_true(cluster, "SELECT count(*) > 0 FROM pg_settings WHERE pending_restart")
    return f"{ctl(cluster, 'reload')} && sleep 1 && if {pending}; then {ctl(cluster, 'restart')}; fi"


def build_replica(replica: Cluster, primary: Cluster) -> str:
    """A fresh replica: pg_basebackup from the primary into the cluster's data dir, creating its
    replication slot (an old slot of the same name is dropped first: this replica replaces it).

    The data dir it replaces goes only once a base backup taken from a primary is in hand: when
    the primaries record disagrees with the hosts (the "primary" it names is a standby), the
    member being rebuilt may be the real primary, and its data must not be swapped for a copy of a
    standby's. The backup's own label says where it was taken. (So the volume holds both for the
    length of the copy: the old data dir, or its fenced copy, and the new one.)

    Not `-R`: it would write primary_conninfo into postgresql.auto.conf, which overrides the
    managed postgresql.conf; the template holds primary_conninfo (with a passfile, so no
    password lands in any config) and we create standby.signal ourselves.
    """
    conn = f"-h {primary.address} -p {primary.port} -U {REPLICATION_USER} -w"
    as_postgres = f"runuser -u postgres -- env PGPASSFILE={PASSFILE}"
    partial = f"{replica.data_dir}.partial"
    from_a_standby = (f"{partial}: the base backup came from {primary.name} on {primary.address}:{primary.port}, "
                      f"a standby; the primaries record names it primary of shard {primary.shard}: "
                      f"{replica.name} is stopped with its data as it was (check the record against the hosts)")
    drop_slot = f"{as_postgres} pg_receivewal --drop-slot -S {replica.slot} {conn} >/dev/null 2>&1 || true"
    return " && ".join(
        [
            create_cluster(replica),
            # A former primary may still run (it came back after a failover): it stops first.
            f"{{ {ctl(replica, 'stop -m immediate')} >/dev/null 2>&1 || true; }}",
            f"for i in $(seq 60); do pg_isready -q -h {primary.address} -p {primary.port} && break; sleep 1; done",
            f"{{ {drop_slot}; }}",
            f"rm -rf {partial}",
            f"{as_postgres} pg_basebackup {conn} -D {partial} -X stream -C -S {replica.slot} --checkpoint=fast",
            # Not from a primary: the copy and the slot it made on its source (which would hold WAL
            # there) go, and nothing else changes.
            f"{{ grep -qx 'BACKUP FROM: primary' {partial}/backup_label || "
            f"{{ rm -rf {partial}; {drop_slot}; echo {shlex.quote(from_a_standby)} >&2; false; }}; }}",
            # Settings live in the managed postgresql.conf; a primary's postgresql.auto.conf may
            # hold a restore's recovery target, which would make this standby stop and promote.
            f"runuser -u postgres -- truncate -s 0 {partial}/postgresql.auto.conf",
            f"runuser -u postgres -- touch {partial}/standby.signal",
            # The data dir this replaces (the fresh cluster's initdb one, a former primary's) and a
            # fenced old one (see `fence`) go only now.
            f"rm -rf {replica.data_dir} {replica.data_dir}{FENCED_SUFFIX}",
            f"mv {partial} {replica.data_dir}",
        ]
    )


def replica_built(replica: Cluster) -> str:
    """Succeeds once the replica's cluster exists with a base backup in place, still a standby.

    A data dir without standby.signal was promoted: a former primary, which must be rebuilt
    from the current primary before it may run again (it would otherwise be a second primary).
    """
    data = replica.data_dir
    return f"[ -f {replica.config_dir}/postgresql.conf ] && [ -f {data}/PG_VERSION ] && [ -f {data}/standby.signal ]"


# --- failover: fence the old primary, promote a replica, warm its cache --------------------

def fence(cluster: Cluster) -> str:
    """Stop a (failed) primary at once and move its data dir aside, so that nothing — a reboot,
    a watchdog, an operator's `service postgresql start` — can bring it back as a second
    primary. The next converge (or `ops rebuild-replica`) rebuilds it as a replica; the old data
    dir stays as `<data dir>.fenced` for forensics until then."""
    data = cluster.data_dir
    return (
        f"{{ {ctl(cluster, 'stop -m immediate')} >/dev/null 2>&1 || true; }}; "
        f"if [ -d {data} ]; then rm -rf {data}{FENCED_SUFFIX} && mv {data} {data}{FENCED_SUFFIX}; fi"
    )


def promote(cluster: Cluster, timeout_s: int = 30) -> str:
    """Promote a streaming replica to primary and wait until it accepts writes."""
    return f"{ctl(cluster, 'promote')} && {wait_writable(cluster, timeout_s)}"


def wait_writable(cluster: Cluster, timeout_s: int) -> str:
    """Wait until the cluster is out of recovery (promoted) and accepts writes."""
    writable = psql_is_true(cluster, "SELECT NOT pg_is_in_recovery()")
    return (
        f"for i in $(seq {timeout_s * 10}); do {writable} && exit 0; sleep 0.1; done; "
        f"echo '{cluster.name} still in recovery after {timeout_s}s' >&2; exit 1"
    )


def received_wal(cluster: Cluster) -> str:
    """Print how far a replica has received (and flushed) WAL, in bytes from 0/0."""
    return psql_value(cluster, "SELECT pg_wal_lsn_diff(coalesce(pg_last_wal_receive_lsn(), "
                               "pg_last_wal_replay_lsn()), '0/0')::bigint")


def warm_cache(cluster: Cluster) -> str:
    """Read the new primary's tables and indexes into the page cache (vmtouch), so the first
    minutes after a failover are not served from cold disk."""
    return f"vmtouch -q -t {cluster.data_dir}/base"


def wait_streaming(primary: Cluster, replica: Cluster, timeout_s: int = 120) -> str:
    """Wait until `replica` streams from `primary` (seen in the primary's pg_stat_replication)."""
    streaming = psql_is_true(
        primary,
        f"SELECT count(*) = 1 FROM pg_stat_replication WHERE application_name = {sql_literal(replica.name)} "
        "AND state = 'streaming'",
    )
    return (
        f"for i in $(seq {timeout_s * 10}); do {streaming} && exit 0; sleep 0.1; done; "
        f"echo '{replica.name} does not stream from {primary.name} after {timeout_s}s' >&2; exit 1"
    )


def roles_sql(verifiers: dict[str, str], app_logins: tuple[str, ...] = ()) -> str:
    """Create or update the logins (passwords as SCRAM verifiers, never in plain text); each of
    `app_logins` (also in `verifiers`) is a member of APP_USER acting as it (auth.app_login)."""
    options = {
        APP_USER: "LOGIN",
        REPLICATION_USER: "LOGIN REPLICATION",
    }
    statements = []
    for user, verifier in verifiers.items():
        attributes = options.get(user, "LOGIN")
        statements.append(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {sql_literal(user)}) THEN "
            f"CREATE ROLE {user}; END IF; END $$;\n"
            f"ALTER ROLE {user} {attributes} PASSWORD {sql_literal(verifier)};"
        )
    statements += [f"GRANT {APP_USER} TO {login};\nALTER ROLE {login} SET role = {sql_literal(APP_USER)};"
                   for login in app_logins]
    # The admin/stats login also reads replication and activity views for monitoring.
    statements += [f"GRANT pg_monitor TO {u};" for u in verifiers if u not in options and u not in app_logins]
    return "\n".join(statements) + "\n"


def roles_match(verifiers: dict[str, str], app_logins: tuple[str, ...] = ()) -> str:
    """The query that is true when every login exists with exactly its verifier, and every app
    login is a member of APP_USER acting as it."""
    pairs = ", ".join(f"({sql_literal(u)}, {sql_literal(v)})" for u, v in verifiers.items())
    query = f"SELECT count(*) = {len(verifiers)} FROM pg_authid WHERE (rolname, rolpassword) IN ({pairs})"
    if not app_logins:
        return query
    names = ", ".join(sql_literal(login) for login in app_logins)
    return (
        f"SELECT ({query}) AND (SELECT count(*) = {len(app_logins)} FROM pg_auth_members m "
        f"JOIN pg_roles r ON r.oid = m.member WHERE m.roleid = {sql_literal(APP_USER)}::regrole AND r.rolname IN ({names})) "
        f"AND (SELECT count(*) = {len(app_logins)} FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
        f"WHERE s.setdatabase = 0 AND r.rolname IN ({names}) AND s.setconfig @> ARRAY[{sql_literal('role=' + APP_USER)}])"
    )


def drop_login_sql(login: str) -> str:
    """Drop a retired app login: its sessions (pgbouncer's idle server connections; every client
    uses the new login by then) end first. It owns nothing: it acts as APP_USER."""
    return (f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {sql_literal(login)};\n"
            f"DROP ROLE IF EXISTS {login};\n")


def create_database_sql(database: str) -> str:
    return f"CREATE DATABASE {database} OWNER {APP_USER};\n"


def database_exists(database: str) -> str:
    return f"SELECT count(*) = 1 FROM pg_database WHERE datname = {sql_literal(database)}"


def logical_shards_sql(logical: list[int], epoch_ms: int) -> str:
    """Every logical shard's schema, id sequence and next_id(), owned by the app user (so the
    app's migrations may alter them); the very SQL of infra/sharding.next_id_sql."""
    body = "".join(next_id_sql(schema_name(n), n, epoch_ms) for n in logical)
    return f"BEGIN;\nSET LOCAL ROLE {APP_USER};\n{body}COMMIT;\n"


def logical_shards_exist(logical: list[int]) -> str:
    """True when every listed schema has its next_id()."""
    names = ",".join(schema_name(n) for n in logical)
    return (
        "SELECT count(*) = " + str(len(logical)) + " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        f"WHERE p.proname = 'next_id' AND n.nspname = ANY('{{{names}}}'::text[])"
    )
