"""munin_node / munin_master desired state for the one-box, as values (no SSH)."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from infra.config import load_stack_config
from infra.inventory import onebox_hosts
from infra.shardstore import Primaries, primaries_store
from roles.context import RoleContext
from roles.engine.resources import Command, File, Service
from roles.munin_master.role import desired as master_desired
from roles.munin_master.role import dashboard_site, munin_hosts, watcher_config
from roles.munin_node.plugins import host_plugins
from roles.munin_node.role import desired as node_desired
from roles.munin_node.role import requirements


@pytest.fixture(autouse=True)
def _own_state(state_root):
    """Plugins follow the stored primaries: read a private state dir, not the live one-box's."""


def onebox_context() -> RoleContext:
    config = load_stack_config("onebox")
    hosts = tuple(onebox_hosts(config))
    return RoleContext(config, "onebox", hosts[0], hosts, lambda name: f"secret-{name}")


def test_onebox_host_gets_a_plugin_per_service_instance():
    names = [p.name for p in host_plugins(onebox_context())]
    assert names == [
        "nginx", "gunicorn_app_0", "gunicorn_app_1", "pgbouncer",
        "postgres_connections_0_primary", "postgres_archive_0_primary", "pgbackrest_backup_shard0",
        "pgbackrest_drill_shard0", "postgres_shard_rows_0", "postgres_shard_size_0",
        "postgres_replication_0_replica1", "postgres_connections_0_replica1", "postgres_archive_0_replica1",
        "postgres_connections_1_primary", "postgres_archive_1_primary", "pgbackrest_backup_shard1",
        "pgbackrest_drill_shard1", "postgres_shard_rows_1", "postgres_shard_size_1",
        "postgres_replication_1_replica1", "postgres_connections_1_replica1", "postgres_archive_1_replica1",
        "redis_primary", "photos_per_second", "likes_per_second", "signups_per_minute", "redis_replica1",
        "rabbitmq", "celery",
    ]


def test_limits_and_settings_reach_the_plugins():
    plugins = {p.name: dict(p.env) for p in host_plugins(onebox_context())}
    assert plugins["pgbouncer"]["waiting_warning"] == "5" and plugins["pgbouncer"]["waiting_critical"] == "20"
    assert plugins["redis_replica1"]["used_memory_critical"] == "240000000"
    assert plugins["postgres_replication_1_replica1"].items() >= {"port": "5435", "replica": "shard1r1",
                                                                  "lag_bytes_warning": "1048576"}.items()
    assert plugins["photos_per_second"]["key"] == "photostack:counter:photos_posted"
    assert "photos_warning" not in plugins["photos_per_second"]  # no limit configured, none invented


def test_munin_node_conf_binds_loopback_and_secrets_stay_root_only():
    state = node_desired(onebox_context())
    files = {r.path: r for r in state.resources if isinstance(r, File)}
    conf = files["/etc/munin/munin-node.conf"].content
    assert "host 127.0.0.1\nport 4949\n" in conf and "host_name onebox" in conf
    plugin_conf = files["/etc/munin/plugin-conf.d/photostack"]
    assert plugin_conf.sensitive and plugin_conf.mode == 0o600
    # Redis plugins log in as the read-only munin user, never with the app's password.
    assert "env.login munin\n" in plugin_conf.content and "secret-redisPassword" not in plugin_conf.content
    script = files["/usr/local/lib/photostack/munin/plugins/redis_"].content
    assert script.startswith("#!/opt/photostack/venv/bin/python\n")
    prune = next(r for r in state.resources if isinstance(r, Command) and r.name == "prune unmanaged plugins")
    assert "celery cpu df df_inode gunicorn_app_0" in prune.unless


def test_venv_installs_the_locked_pins_with_hashes():
    from infra.lockfile import locked_version, parse

    text = requirements(["python-munin", "pagerduty"])
    pinned = {e.name: e.version for e in parse(text)}
    # The packages at their locked versions, and what they need (pagerduty's HTTP client), hashed.
    assert pinned["python-munin"] == locked_version("python-munin") and pinned["pagerduty"] == locked_version("pagerduty")
    assert "httpx2" in pinned and all("--hash=sha256:" in e.text for e in parse(text))
    state = node_desired(onebox_context())
    build = next(r for r in state.resources if isinstance(r, Command) and r.name.startswith("venv "))
    assert "--require-hashes" in build.run



def test_requirements_without_a_checkout_come_from_the_bundles_lock_file(tmp_path, monkeypatch):
    """A host installs the release non-editable: no requirements.lock beside the packages (the
    missing path stands for site-packages'); the lock is the unpacked bundle's, where the stack
    config is ($PHOTOSTACK_STACKS_DIR), and gives the same pins as the checkout's."""
    from infra import lockfile

    in_checkout = requirements(["pagerduty", "redis"])
    bundle = tmp_path / "release"
    bundle.mkdir()
    shutil.copy(lockfile.LOCK_FILE, bundle / "requirements.lock")
    monkeypatch.setattr(lockfile, "LOCK_FILE", tmp_path / "site-packages" / "requirements.lock")
    monkeypatch.setenv("PHOTOSTACK_STACKS_DIR", str(bundle))
    assert lockfile.lock_file() == bundle / "requirements.lock"
    assert requirements(["pagerduty", "redis"]) == in_checkout

def test_munin_conf_polls_every_host_with_limits_and_pages_through_the_pipeline():
    ctx = onebox_context()
    [host] = munin_hosts(ctx)
    assert (host.name, host.address, host.port) == ("onebox", "127.0.0.1", 4949)
    assert ("pgbouncer", "waiting", "critical", "20") in host.limits
    conf = next(r for r in master_desired(ctx).resources if isinstance(r, File) and r.path == "/etc/munin/munin.conf")
    assert "[onebox;onebox]\n    address 127.0.0.1\n    port 4949\n" in conf.content
    assert "    pgbouncer.waiting.warning 5\n" in conf.content
    assert "contact.photostack.command /usr/bin/sudo -n /usr/local/sbin/photostack-munin-alert\n" in conf.content
    assert "html_strategy cron" in conf.content


def test_watcher_probes_every_web_node_and_is_started_as_a_service():
    ctx = onebox_context()
    config = watcher_config(ctx)
    assert config.interval_s == ctx.config.monitoring.health_probe_interval_s
    assert config.targets[0].url == "http://127.0.0.1:8080/health/node"  # the node, not its dependencies
    services = [r.name for r in master_desired(ctx).resources if isinstance(r, Service)]
    assert services == ["photostack-health-watcher", "photostack-audit-publisher", "munin-cron-loop"]


def test_wildcard_plugin_instances_page_with_their_kinds_runbook():
    from infra.alerts import runbook_name

    assert runbook_name("redis_primary", "used_memory") == "redis_memory_high"
    assert runbook_name("postgres_replication_0_replica1", "lag_bytes") == "replication_lag_high"
    assert runbook_name("health", "app-0") == "web_node_down"
    assert runbook_name("photos_per_second", "photos") == "photos_per_second"


def test_replication_lag_follows_a_failover():
    """After shard 0 failed over to member 1, its lag is measured on member 1 (port and slot of
    the former primary, now the replica)."""
    config = load_stack_config("onebox")
    primaries_store(config, "onebox").save(Primaries().failed_over(0, 1))
    plugins = {p.name: dict(p.env) for p in host_plugins(onebox_context())}
    assert "postgres_replication_0_replica1" not in plugins
    assert plugins["postgres_replication_0_primary"].items() >= {"port": "5434", "replica": "shard0"}.items()
    assert plugins["postgres_replication_1_replica1"]["port"] == "5435"  # shard 1 untouched


def test_on_aws_the_monitoring_host_serves_the_munin_pages_to_the_load_balancer():
    ctx = onebox_context()
    aws = replace(ctx, config=ctx.config.model_copy(update={"target": "aws"}))
    files = {r.path: r.content for r in dashboard_site(aws) if isinstance(r, File)}  # what desired() adds on AWS
    site = files["/etc/nginx/conf.d/photostack-munin.conf"]
    assert "listen 80 default_server;" in site and "alias /var/cache/munin/www/;" in site
    assert "return 404;" in site  # nothing but the Munin pages
    # The one-box's own nginx role serves /munin/: no second nginx site there.
    assert "/etc/nginx/conf.d/photostack-munin.conf" not in {r.path for r in master_desired(ctx).resources
                                                            if isinstance(r, File)}


def test_the_venv_is_rebuilt_when_the_pins_change_in_the_same_converge_that_writes_them():
    import hashlib

    state = node_desired(onebox_context())
    wanted = next(r for r in state.resources if isinstance(r, File) and r.path == "/opt/photostack/venv.requirements.txt")
    venv = next(r for r in state.resources if isinstance(r, Command) and r.name == "venv /opt/photostack/venv")
    # The check reads the built venv's record only (facts are gathered before the pins file is written).
    assert hashlib.sha256(wanted.content.encode()).hexdigest() in venv.unless
    assert "venv.requirements.txt" not in venv.unless


def test_backup_plugins_page_on_stale_backups_and_failing_archives_by_default():
    plugins = {p.name: dict(p.env) for p in host_plugins(onebox_context())}
    config = load_stack_config("onebox")
    assert plugins["pgbackrest_backup_shard0"]["age_hours_critical"] == str(config.backups.stale_after_h)
    # warning: an hour after a scheduled backup was due (the default schedule backs up daily)
    assert plugins["pgbackrest_backup_shard0"]["age_hours_warning"] == "25"
    drill = plugins["pgbackrest_drill_shard1"]
    assert drill["failed_critical"] == "0.5" and drill["age_hours_critical"] == str(config.backups.drill_stale_after_h)
    assert drill["age_hours_warning"] == "25" and drill["port"] == "5435" and drill["stanza"] == "shard1"
    assert plugins["pgbackrest_backup_shard0"]["stanza"] == "shard0"
    (backup,) = [p for p in host_plugins(onebox_context()) if p.name == "pgbackrest_backup_shard1"]
    assert (backup.user, backup.group) == ("postgres", "postgres")  # reads root:postgres 0640 pgbackrest.conf
    assert plugins["postgres_archive_1_primary"]["failing_critical"] == "0.5"
    assert plugins["postgres_archive_1_primary"]["ready_segments_warning"] == "8"
