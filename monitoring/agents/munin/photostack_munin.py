"""What every photostack Munin plugin shares: typed fields, graph settings, limits from the env, `U` when down.

A plugin is a small script that defines, at module level:
- `title` (what the graph shows, in words), `info` (a sentence for the graph page),
  `category` (the Munin group; `photostack` is the business overview), `vlabel`;
- optionally `period` ("second" or "minute": DERIVE fields are rates per that period, and
  `${graph_period}` in `vlabel` reads as it), `scale` (False: print 0.03, never "30.00m") and
  `base` (1024 for bytes);
- `fields` (a list of `Field`) and `values()` (name → number, or None when unknown);
then calls `photostack_munin.main()`.

Why not python-munin (the seeds' choice): it is unmaintained since 2017, pulls `six` and
`inflection` in, titles a graph with its file name, cannot emit `graph_info`, `graph_period`,
`graph_scale` or field info, and formats every value as `%0.3f` (DERIVE fields need integers,
rrdtool refuses "12.000"; an unreadable value must be `U`). What we used of it was ~10 lines.

Limits and connection settings arrive as environment variables that munin-node sets from
/etc/munin/plugin-conf.d/photostack (written by the munin_node role from the stack config):
`<field>_warning`, `<field>_critical` (Munin draws them as lines on the graph), and
plugin-specific ones such as `port` or `password`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field as dataclass_field

# Every plugin answers in well under munin-node's timeout: a service that does not answer within
# this many seconds counts as down (its values are U).
TIMEOUT_S = 0.15

Value = int | float | None


@dataclass
class Field:
    """A graphed value; its warning/critical limits come from the env (`<name>_warning`)."""

    name: str
    label: str | None = None
    type: str = "GAUGE"
    min: str | None = None
    cdef: str | None = None
    info: str | None = None
    draw: str | None = None
    warning: str | None = dataclass_field(init=False)
    critical: str | None = dataclass_field(init=False)

    def __post_init__(self) -> None:
        self.label = self.label or self.name.replace("_", " ")
        if self.min is None and self.type in ("DERIVE", "COUNTER"):
            self.min = "0"  # a counter reset (Redis wiped, service restarted) is not a negative rate
        self.warning = os.environ.get(f"{self.name}_warning") or None
        self.critical = os.environ.get(f"{self.name}_critical") or None

    def config_lines(self) -> list[str]:
        """This field's lines of the plugin's `config` answer."""
        lines = {"label": self.label, "type": None if self.type == "GAUGE" else self.type, "min": self.min,
                 "cdef": self.cdef, "info": self.info, "draw": self.draw,
                 "warning": self.warning, "critical": self.critical}
        return [f"{self.name}.{key} {value}" for key, value in lines.items() if value is not None]


def config_lines(plugin: object) -> list[str]:
    """The whole `config` answer of a plugin module (see the module docstring for its attributes)."""
    fields = plugin.fields() if callable(plugin.fields) else plugin.fields
    # A plugin without a title still graphs (under its file name); tests insist on title and info.
    title = getattr(plugin, "title", None) or os.path.basename(sys.argv[0]).replace("_", " ")
    scale = getattr(plugin, "scale", True)
    # Unscaled rates get two decimals on the axis (rrdtool's default one would label 0.01 … 0.04
    # all "0.0").
    base = getattr(plugin, "base", 1000)  # 1024 for sizes in bytes
    args = f"--base {base} --lower-limit 0" + ("" if scale else " --left-axis-format %.2lf")
    lines = [f"graph_title {title}", f"graph_category {plugin.category}", f"graph_vlabel {plugin.vlabel}",
             f"graph_args {args}"]
    if getattr(plugin, "info", None):
        lines.insert(1, f"graph_info {plugin.info}")
    period = getattr(plugin, "period", None)
    if period:
        lines.append(f"graph_period {period}")
    if not scale:
        # Rates well under 1 would otherwise read "32.74m" (milli-), taken for millions.
        lines += ["graph_scale no", "graph_printf %7.2lf"]
    lines.append("graph_order " + " ".join(f.name for f in fields))
    for f in fields:
        lines += f.config_lines()
    return lines


def env(name: str, default: str = "") -> str:
    """A plugin setting from plugin-conf.d (`env.<name>`)."""
    return os.environ.get(name, default)


def state_file(name: str) -> str:
    """Where a plugin keeps state between runs (munin-node sets MUNIN_PLUGSTATE)."""
    directory = os.environ.get("MUNIN_PLUGSTATE", "/var/lib/munin-node/plugin-state/nobody")
    return os.path.join(directory, f"photostack-{name}.state")


def unknown(fields: list[Field] | Callable[[], list[Field]]) -> dict[str, Value]:
    """Every field unknown: what a plugin reports when its service does not answer."""
    return {f.name: None for f in (fields() if callable(fields) else fields)}


def format_value(value: Value) -> str:
    """Munin's text for one value: U for unknown, integers as integers."""
    if value is None:
        return "U"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}"


def fetch_lines(values: Mapping[str, Value]) -> list[str]:
    """The `fetch` answer for `values`, sorted by field name."""
    return sorted(f"{name}.value {format_value(value)}" for name, value in values.items())


def main() -> None:
    """Answer `config` (graph and field settings) or a fetch (the values of `__main__.values()`)."""
    plugin = sys.modules["__main__"]
    if sys.argv[1:] == ["config"]:
        print("\n".join(config_lines(plugin)))
        return
    if sys.argv[1:]:
        raise SystemExit(f"{os.path.basename(sys.argv[0])}: unknown argument {sys.argv[1]!r} (use 'config' or none)")
    print("\n".join(fetch_lines(plugin.values())))


class ServiceDown(Exception):
    """The service did not answer (or answered an error): its fields are U."""


def redis_command(*args: str) -> bytes | int | None:
    """One Redis command over RESP on a plain socket, with env `host`, `port`, `login`, `password`.

    Not redis-py: importing it takes ~0.3 s (asyncio and friends), more than a plugin's whole budget.
    """
    import socket

    login = tuple(v for v in (env("login"), env("password")) if v)
    commands = ([("AUTH", *login)] if env("password") else []) + [args]
    payload = b"".join(_resp_array(c) for c in commands)
    try:
        with socket.create_connection((env("host", "127.0.0.1"), int(env("port", "6379"))), timeout=TIMEOUT_S) as sock:
            sock.sendall(payload)
            reader = sock.makefile("rb")
            replies = [_resp_reply(reader) for _ in commands]
    except OSError as exc:
        raise ServiceDown(f"redis: {exc}") from None
    return replies[-1]


def _resp_array(args: tuple[str, ...]) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _resp_reply(reader) -> bytes | int | None:
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise ServiceDown("redis: connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"-":
        raise ServiceDown(f"redis: {rest.decode(errors='replace')}")
    if kind == b":":
        return int(rest)
    if kind == b"+":
        return rest
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reader.read(size + 2)[:-2]
    raise ServiceDown(f"redis: unexpected reply {line[:20]!r}")


def redis_info() -> dict[str, str]:
    """`INFO` of the Redis at env `host`/`port` as a dict."""
    text = (redis_command("INFO") or b"").decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def counter_total(key: str) -> Value:
    """The app's monotonically increasing Redis counter `key` (0 if never incremented), U if Redis is down."""
    try:
        raw = redis_command("GET", key)
    except ServiceDown:
        return None
    return int(raw or 0)


def psql_rows(sql: str, database: str = "postgres") -> list[dict[str, str]]:
    """Rows of `sql` as dicts, through `psql` (env `host`, `port`, `login`, `password`).

    psql, not psycopg: it starts in a few ms where importing psycopg takes ~0.3 s, and it speaks
    the simple query protocol that pgbouncer's admin console requires.
    """
    import subprocess

    argv = ["psql", "-X", "-A", "-F", "\t", "-P", "footer=off", "-v", "ON_ERROR_STOP=1",
            "-h", env("host", "/var/run/postgresql"), "-p", env("port", "5432"), "-d", database, "-c", sql]
    if env("login"):
        argv[1:1] = ["-U", env("login")]
    environment = {**os.environ, "PGCONNECT_TIMEOUT": "2", "PGAPPNAME": "munin"}
    if env("password"):
        environment["PGPASSWORD"] = env("password")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1.0, env=environment)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceDown(f"psql: {exc}") from None
    if done.returncode != 0:
        raise ServiceDown(f"psql: {done.stderr.strip()}")
    lines = done.stdout.splitlines()
    if not lines:
        return []
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def per_logical_shard(sql: str) -> dict[str, int] | None:
    """{schema: amount} of `sql`, which selects `schema` and `amount` for each logical shard's schema
    (`shard_NNNN`) in env `database`; None when Postgres does not answer."""
    try:
        return {row["schema"]: int(row["amount"]) for row in psql_rows(sql, env("database", "postgres"))}
    except ServiceDown:
        return None


def logical_shard_fields(amounts: Mapping[str, int] | None, unit: str) -> list[Field]:
    """One stacked area per logical shard (field = its schema), then the physical shard's total."""
    shards = [Field(schema, schema, draw="AREASTACK", info=f"{unit} of logical shard {int(schema[6:])}")
              for schema in amounts or {}]
    return [*shards, Field("total", "total", draw="LINE2", info=f"{unit} of every logical shard on this physical shard")]


def logical_shard_values(amounts: Mapping[str, int] | None) -> dict[str, Value]:
    """Each logical shard's amount and their total (only the total, unknown, when Postgres is down)."""
    if amounts is None:
        return {"total": None}
    return {**amounts, "total": sum(amounts.values())}


def http_get(url: str, user: str = "", password: str = "") -> bytes:
    """The body of a 200 answer to GET `url` (basic auth when `user` is set)."""
    import base64
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    headers = {}
    if user:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=TIMEOUT_S)
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
        response = conn.getresponse()
        body = response.read()
        conn.close()
    except (OSError, http.client.HTTPException) as exc:
        raise ServiceDown(f"GET {url}: {exc}") from None
    if response.status != 200:
        raise ServiceDown(f"GET {url}: HTTP {response.status}")
    return body
