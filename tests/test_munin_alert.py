"""Munin's contact hook: Munin's own template expansion → our parser → the alert pipeline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.state import state_dir
from monitoring.alerts.alert_pipeline import AlertPipeline
from monitoring.alerts.alert_store import AlertStore
from monitoring.agents.munin_alert import FieldState, handle, munin_conf_lines, parse_line
from monitoring.alerts.silences import SilenceStore

MUNIN_LIMITS = Path("/usr/share/perl5/Munin/Master/LimitsOld.pm")

# Expand the contact text exactly as munin-limits does (its config parser and message_expand),
# for a service with one critical field and one freshly OK field.
EXPAND = r"""
use strict; use warnings;
use Munin::Master::Utils; use Munin::Master::LimitsOld;
my $config = munin_readconfig_raw($ARGV[0]);
my $svc = munin_get_node($config, ["onebox", "redis-1", "redis"]);
$svc->{plugin} = "redis"; $svc->{host} = "redis-1";
my $f = munin_get_node($svc, ["used_memory"]);
$f->{value} = "245000000.00"; $f->{crange} = ":240000000"; $f->{wrange} = ":200000000";
my $k = munin_get_node($svc, ["evicted"]); $k->{value} = "0.00"; $k->{crange} = ":"; $k->{wrange} = ":";
$svc->{cfields} = "used_memory"; $svc->{wfields} = ""; $svc->{ufields} = ""; $svc->{fofields} = "evicted";
my $text = munin_get(munin_get_node($config, ["contact", "photostack"]), "text");
my $txt = Munin::Master::LimitsOld::message_expand($svc, $text, "");
$txt =~ s/\\n/\n/g; $txt =~ s/\\t/\t/g;
print $txt, "\n";
"""


@pytest.mark.skipif(not MUNIN_LIMITS.exists() or not shutil.which("perl"), reason="munin (perl) not installed")
def test_munin_expands_our_contact_text_into_lines_we_parse(tmp_path):
    conf = tmp_path / "munin.conf"
    conf.write_text("\n".join([
        f"dbdir {tmp_path}",
        *munin_conf_lines("/usr/local/sbin/photostack-munin-alert"),
        "[onebox;redis-1]",
        "  address 127.0.0.1",
        "  redis.used_memory.label used memory",
        "  redis.used_memory.critical 240000000",
        "  redis.evicted.label evicted keys",
    ]) + "\n")
    script = tmp_path / "expand.pl"
    script.write_text(EXPAND)
    output = subprocess.run(["perl", str(script), str(conf)], capture_output=True, text=True, timeout=30,
                            check=True).stdout

    states = [s for s in map(parse_line, output.splitlines()) if s]
    assert states == [
        FieldState("critical", "redis-1", "redis", "used_memory", "245000000.00", ":200000000", ":240000000",
                   "used memory"),
        FieldState("ok", "redis-1", "redis", "evicted", "0.00", "", "", "evicted keys"),
    ]


def test_states_map_to_severities_and_ok_resolves_only_what_was_opened(tmp_path):
    pipeline = AlertPipeline(AlertStore(tmp_path), SilenceStore(tmp_path), None, "https://rb", "onebox")
    lines = [
        "photostack-alert\tstate=critical\thost=db-1\tplugin=pgbouncer\tfield=waiting\tvalue=25.00\twarning=:5\tcritical=:20\tlabel=waiting",
        "photostack-alert\tstate=warning\thost=db-1\tplugin=postgres_replication\tfield=lag_bytes\tvalue=2e6\twarning=:1048576\tcritical=:\tlabel=lag",
        "photostack-alert\tstate=unknown\thost=mq-1\tplugin=rabbitmq\tfield=messages_ready\tvalue=unknown\twarning=:\tcritical=:\tlabel=ready",
        "photostack-alert\tstate=ok\thost=db-1\tplugin=pgbouncer\tfield=waiting\tvalue=0.00\twarning=:5\tcritical=:20\tlabel=waiting",
        "photostack-alert\tstate=ok\thost=db-1\tplugin=pgbouncer\tfield=active\tvalue=3.00\twarning=:\tcritical=:\tlabel=active",
        "",
        "some other contact text",
    ]
    outcomes = handle([s for s in map(parse_line, lines) if s], pipeline, "onebox")

    assert [o.status for o in outcomes] == ["local", "local", "local", "local", "skipped"]
    records = AlertStore(tmp_path).history()
    assert [(r["action"], r["severity"]) for r in records] == [
        ("trigger", "critical"), ("trigger", "warning"), ("trigger", "error"), ("resolve", None)]
    assert "unknown (no data)" in records[2]["summary"]
    assert set(AlertStore(tmp_path).open_alerts()) == {
        "onebox/db-1/postgres_replication/lag_bytes", "onebox/mq-1/rabbitmq/messages_ready"}


def test_a_malformed_line_is_named():
    with pytest.raises(ValueError, match="malformed Munin alert line"):
        parse_line("photostack-alert\tstate=bogus\thost=h\tplugin=p\tfield=f")


def test_hook_command_reads_stdin_and_logs_locally_without_a_routing_key(state_root):
    line = "photostack-alert\tstate=critical\thost=app-1\tplugin=nginx\tfield=errors_5xx\tvalue=9.00\twarning=:1\tcritical=:5\tlabel=5xx\n"
    env = {**os.environ, "PHOTOSTACK_STATE_DIR": str(state_root)}
    result = subprocess.run([sys.executable, "-m", "monitoring.agents.munin_alert", "--stack", "onebox"], input=line,
                            capture_output=True, text=True, env=env, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "local onebox/app-1/nginx/errors_5xx" in result.stderr
    [record] = AlertStore(state_dir("onebox")).history()
    assert record["runbook"].endswith("/5xx_rate_high.md")


def test_hook_with_an_unknown_stack_says_so_in_one_line(state_root):
    result = subprocess.run([sys.executable, "-m", "monitoring.agents.munin_alert", "--stack", "nope"], input="",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "nope" in result.stderr
