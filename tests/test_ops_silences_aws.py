"""`ops silence` on an AWS stack: shared by every operator and read by the munin master.

Service-wide silences become PagerDuty maintenance windows (the `pagerduty` package's REST client
against the local HTTPS fake), host- or alert-scoped ones SSM parameters (moto over HTTP) that the
alert pipeline reads. The CLI runs in a subprocess like an operator's."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from infra.alerts import Alert
from infra.alerts import silences_path
from infra.config import load_stack_config
from monitoring.alerts.silences import silence_store

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(moto_account, pagerduty_server, test_certificates, tmp_path):
    """An operator's environment: AWS at moto, PagerDuty's REST API at the fake (service known)."""
    pagerduty_server.services.append({"id": "PSVCPROD", "name": "photostack prod", "type": "service"})
    pagerduty_server.services.append({"id": "PSVCSTG", "name": "photostack staging", "type": "service"})
    values = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PHOTOSTACK_", "PAGERDUTY_"))}
    values.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                  AWS_ENDPOINT_URL=moto_account, AWS_CONFIG_FILE=str(tmp_path / "none"),
                  AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), PHOTOSTACK_STATE_DIR=str(tmp_path / "state"),
                  PAGERDUTY_TOKEN=pagerduty_server.rest_token, PAGERDUTY_USER_EMAIL="alice@example.com",
                  PHOTOSTACK_PAGERDUTY_API_URL=pagerduty_server.url,
                  PHOTOSTACK_PAGERDUTY_API_CA=str(test_certificates.ca_bundle), PYTHONPATH=str(REPO))
    return values


def _ops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "ops", "silence", "--stack", "prod", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    done.said = " ".join((done.stdout + done.stderr).split())  # rich wraps at the terminal's width
    return done


def _ssm(env):
    return boto3.client("ssm", region_name="us-east-1", endpoint_url=env["AWS_ENDPOINT_URL"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_a_service_wide_silence_is_a_pagerduty_maintenance_window(env, pagerduty_server):
    done = _ops(env, "--for", "30m")
    assert done.returncode == 0, done.said
    (window,) = pagerduty_server.windows.values()
    assert window["services"] == [{"id": "PSVCPROD", "type": "service_reference"}]
    assert window["created_by"] == "alice@example.com" and window["description"] == "ops silence --for 30m"
    start, end = (dt.datetime.fromisoformat(window[k]) for k in ("start_time", "end_time"))
    assert end - start == dt.timedelta(minutes=30)
    assert done.said.startswith("silenced every alert until ") and window["id"] in done.said
    assert _ssm(env).get_parameters_by_path(Path=silences_path("prod"))["Parameters"] == []

    listed = _ops(env, "--list")
    assert window["id"] in listed.said and "PagerDuty maintenance window" in listed.said
    cleared = _ops(env, "--clear")
    assert cleared.returncode == 0 and "ended 1 maintenance window(s)" in cleared.said
    assert pagerduty_server.windows == {}


def test_a_host_silence_is_in_ssm_where_the_munin_master_reads_it(env, pagerduty_server, monkeypatch):
    done = _ops(env, "--for", "1h", "--host", "app-3", "--alert", "redis.used_memory")
    assert done.returncode == 0, done.said
    assert pagerduty_server.windows == {}
    (parameter,) = _ssm(env).get_parameters_by_path(Path=silences_path("prod"))["Parameters"]
    # The munin master's view (its pipeline's store, with its own client): the same silence.
    monkeypatch.setenv("AWS_ENDPOINT_URL", env["AWS_ENDPOINT_URL"])
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    store = silence_store("prod", load_stack_config("prod"))
    covered = Alert("prod", "app-3", "redis", "used_memory", "critical", "9")
    elsewhere = Alert("prod", "app-4", "redis", "used_memory", "critical", "9")
    assert store.matching(covered).id in parameter["Name"] and store.matching(elsewhere) is None
    assert _ops(env, "--clear").returncode == 0
    assert store.matching(covered) is None


def test_without_a_pagerduty_token_a_service_wide_silence_is_one_line_naming_it(env, pagerduty_server):
    del env["PAGERDUTY_TOKEN"]
    done = _ops(env, "--for", "30m")
    assert done.returncode == 2
    assert done.said == ("error: service-wide silences on AWS are PagerDuty maintenance windows: set PAGERDUTY_TOKEN")
    assert pagerduty_server.windows == {}


def test_the_munin_master_alone_may_read_the_silences():
    from tests._infra_plans import plan_of

    plan = plan_of("prod")
    grants = {r.name: r.inputs["policy"] for r in plan.of_type("aws:iam/rolePolicy:RolePolicy") if "GetParametersByPath" in r.inputs["policy"]}
    assert list(grants) == ["fleet-munin_master-silences"]
    assert ":parameter/photostack/prod/silences" in grants["fleet-munin_master-silences"]


def _trail(env) -> list[tuple[str, str]]:
    logs = boto3.client("logs", region_name="us-east-1", endpoint_url=env["AWS_ENDPOINT_URL"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")
    try:
        events = logs.filter_log_events(logGroupName="/photostack/prod/ops-audit")["events"]
    except logs.exceptions.ResourceNotFoundException:
        return []
    entries = [json.loads(e["message"]) for e in sorted(events, key=lambda e: e["timestamp"])]
    return [(e["command"], e["outcome"]) for e in entries]


def test_setting_and_clearing_silences_is_in_the_audit_trail_listing_is_not(env, pagerduty_server):
    assert _ops(env, "--for", "1h", "--host", "app-3", "--alert", "redis.used_memory").returncode == 0
    assert _ops(env, "--list").returncode == 0
    assert _ops(env, "--clear").returncode == 0
    del env["PAGERDUTY_TOKEN"]
    assert _ops(env, "--for", "30m").returncode == 2
    assert _trail(env) == [
        ("silence --for 1h --host app-3 --alert redis.used_memory", "ok"),
        ("silence --clear", "ok"),
        ("silence --for 30m", "failed: service-wide silences on AWS are PagerDuty maintenance windows: set PAGERDUTY_TOKEN"),
    ]
