"""`ops` alerting commands: silences, the alert list, spool flush and Pingdom sync."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from infra.config import REPO_ROOT, stack_file
from infra.secrets import SecretStore
from infra.state import state_dir
from monitoring.alerts.alert_pipeline import AlertPipeline
from monitoring.alerts.alert_store import AlertStore
from infra.alerts import Alert
from monitoring.alerts.silences import Silence, SilenceStore, parse_duration
from ops.alerting import PINGDOM_CA_ENV, PINGDOM_URL_ENV, register
from tests.conftest import PINGDOM_TOKEN

runner = CliRunner()


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_silence_for_list_and_clear(app, state_root):
    made = runner.invoke(app, ["silence", "--for", "30m", "--host", "redis-1", "--alert", "redis_memory_high"])
    assert made.exit_code == 0, made.output
    [active] = SilenceStore(state_dir("onebox")).active()
    assert (active.host, active.alert) == ("redis-1", "redis_memory_high")
    assert 1790 < active.until - active.created <= 1800

    listed = runner.invoke(app, ["silence", "--list"])
    assert "host=redis-1" in listed.output and active.id in listed.output

    cleared = runner.invoke(app, ["silence", "--clear"])
    assert "cleared 1" in cleared.output
    assert SilenceStore(state_dir("onebox")).active() == []


@pytest.mark.parametrize("args,message", [
    (["silence", "--for", "soon"], "is not like 30m"),
    (["silence"], "exactly one of"),
    (["silence", "--list", "--host", "h"], "go with --for"),
    (["silence", "--for", "5m", "--stack", "nope"], "nope"),
])
def test_bad_silence_input_is_one_line_and_exit_2(app, state_root, args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output and result.output.strip().count("\n") == 0


def test_silence_matches_host_alert_and_expires():
    store_alert = Alert("s", "redis-1", "redis", "used_memory", "critical", "1")
    assert Silence("a", until=100, host="redis-1").matches(store_alert, now=50)
    assert Silence("a", until=100, alert="redis").matches(store_alert, now=50)
    assert Silence("a", until=100, alert="redis.used_memory").matches(store_alert, now=50)
    assert not Silence("a", until=100, host="redis-2").matches(store_alert, now=50)
    assert not Silence("a", until=100, alert="queue_backlog").matches(store_alert, now=50)
    assert not Silence("a", until=100).matches(store_alert, now=100)
    assert parse_duration("1h30m") == 5400


def test_alerts_lists_local_log_and_open_alerts(app, state_root):
    pipeline = AlertPipeline.for_stack("onebox")
    pipeline.trigger(Alert("onebox", "app-1", "nginx", "errors_5xx", "critical", "9.00"))
    result = runner.invoke(app, ["alerts"])
    assert result.exit_code == 0, result.output
    assert "local" in result.output and "onebox/app-1/nginx/errors_5xx" in result.output
    assert "1 open" in result.output


def scratch_stack(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change) -> None:
    """`Pulumi.<name>.yaml`: the one-box config changed by `change(document)`, in a scratch stacks
    dir (never the working directory)."""
    document = yaml.safe_load(stack_file("onebox", REPO_ROOT).read_text())
    change(document["config"])
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.setenv("PHOTOSTACK_STACKS_DIR", str(stacks))


def test_alert_flush_sends_the_spool(app, state_root, pagerduty_server, test_certificates, monkeypatch, tmp_path):
    scratch_stack("flushdrill", tmp_path, monkeypatch, lambda c: c.update({"photostack:alerting": {"pagerduty": True}}))
    SecretStore.for_stack("flushdrill").set("pagerdutyRoutingKey", "k" * 32)
    AlertStore(state_dir("flushdrill")).spool({"event_action": "resolve", "dedup_key": "flushdrill/h/p/f"})
    monkeypatch.setenv("PHOTOSTACK_PAGERDUTY_URL", pagerduty_server.url)
    monkeypatch.setenv("PHOTOSTACK_PAGERDUTY_CA", str(test_certificates.ca_bundle))
    result = runner.invoke(app, ["alert-flush", "--stack", "flushdrill"])
    assert result.exit_code == 0, result.output
    assert "sent 1" in result.output
    assert pagerduty_server.events[0]["dedup_key"] == "flushdrill/h/p/f"


def test_pingdom_sync_creates_then_leaves_the_check_alone(app, state_root, pingdom_server, test_certificates,
                                                          monkeypatch, tmp_path):
    scratch_stack("pingdrill", tmp_path, monkeypatch, lambda c: c["photostack:monitoring"].update(pingdom=True))
    SecretStore.for_stack("pingdrill").set("pingdomToken", PINGDOM_TOKEN)
    monkeypatch.setenv(PINGDOM_URL_ENV, pingdom_server.api_url)
    monkeypatch.setenv(PINGDOM_CA_ENV, str(test_certificates.ca_bundle))
    first = runner.invoke(app, ["pingdom", "sync", "--stack", "pingdrill", "--integration-id", "99"])
    second = runner.invoke(app, ["pingdom", "sync", "--stack", "pingdrill", "--integration-id", "99"])
    assert "created" in first.output and "unchanged" in second.output
    [check] = pingdom_server.checks.values()
    assert check["hostname"] == "photostack.localhost" and check["integrationids"] == [99]


def test_pingdom_sync_pages_through_the_configured_pagerduty_integration(app, state_root, pingdom_server,
                                                                          test_certificates, monkeypatch, tmp_path):
    scratch_stack("pingdrill", tmp_path, monkeypatch, lambda c: c["photostack:monitoring"].update(
        pingdom=True, pingdomPagerdutyIntegrationId=4711))
    SecretStore.for_stack("pingdrill").set("pingdomToken", PINGDOM_TOKEN)
    monkeypatch.setenv(PINGDOM_URL_ENV, pingdom_server.api_url)
    monkeypatch.setenv(PINGDOM_CA_ENV, str(test_certificates.ca_bundle))
    done = runner.invoke(app, ["pingdom", "sync", "--stack", "pingdrill"])
    assert done.exit_code == 0 and "created" in done.output, done.output
    [check] = pingdom_server.checks.values()
    assert check["integrationids"] == [4711]


def test_pingdom_sync_finds_the_check_pulumi_up_made_instead_of_adding_a_second(
        app, state_root, pingdom_server, test_certificates, monkeypatch, tmp_path):
    """The runbook's `ops pingdom sync` on an AWS stack: the program's check (its dynamic
    provider, with the inputs prod's plan gives it) is the one it syncs."""
    from infra.config import load_stack_config
    from infra.monitoring import PingdomCheckProvider
    from tests._infra_plans import plan_of

    monkeypatch.setenv("SSL_CERT_FILE", str(test_certificates.ca_bundle))
    prod = load_stack_config("prod")
    (planned,) = plan_of("prod").of_type("pulumi-python:dynamic:Resource")
    props = {k: v for k, v in planned.inputs.items() if not k.startswith("__")}
    PingdomCheckProvider().create({**props, "api_url": pingdom_server.api_url, "token": PINGDOM_TOKEN})
    scratch_stack("pingdrill", tmp_path, monkeypatch, lambda c: c.update({
        "photostack:domain": prod.domain, "photostack:monitoring": {
            "pingdom": True, "pingdomPagerdutyIntegrationId": prod.monitoring.pingdom_pagerduty_integration_id}}))
    SecretStore.for_stack("pingdrill").set("pingdomToken", PINGDOM_TOKEN)
    monkeypatch.setenv(PINGDOM_URL_ENV, pingdom_server.api_url)
    monkeypatch.setenv(PINGDOM_CA_ENV, str(test_certificates.ca_bundle))
    done = runner.invoke(app, ["pingdom", "sync", "--stack", "pingdrill"])
    assert done.exit_code == 0 and "unchanged" in done.output, done.output
    assert len(pingdom_server.checks) == 1


def test_pingdom_sync_refuses_when_disabled(app, state_root):
    result = runner.invoke(app, ["pingdom", "sync"])
    assert result.exit_code == 2 and "monitoring.pingdom is off" in result.output


def test_pingdom_sync_on_aws_uses_the_token_every_operator_shares(app, state_root, pingdom_server, test_certificates,
                                                                  moto_account, monkeypatch):
    """On an AWS stack the token is the SSM parameter `pulumi up` writes (not a file on this
    laptop), the dry run only reads Pingdom, and the sync is in the stack's shared audit trail."""
    import boto3

    from ops import audit
    from ops.stack import Stack

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_ENDPOINT_URL": moto_account, "AWS_CONFIG_FILE": str(state_root / "none"),
                       "AWS_SHARED_CREDENTIALS_FILE": str(state_root / "none"), "USER": "alice"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/photostack/prod/pingdomToken", Value=PINGDOM_TOKEN, Type="SecureString")
    monkeypatch.setenv(PINGDOM_URL_ENV, pingdom_server.api_url)
    monkeypatch.setenv(PINGDOM_CA_ENV, str(test_certificates.ca_bundle))
    planned = runner.invoke(app, ["pingdom", "sync", "--stack", "prod", "--dry-run"])
    assert planned.exit_code == 0, planned.output
    assert "create the Pingdom check 'photostack photostack.example.com /health'" in planned.output
    assert "integrations 1234567" in planned.output
    assert pingdom_server.checks == {} and all(method == "GET" for method, *_ in pingdom_server.requests)
    done = runner.invoke(app, ["pingdom", "sync", "--stack", "prod"])
    assert done.exit_code == 0, done.output
    [check] = pingdom_server.checks.values()
    assert check["hostname"] == "photostack.example.com" and check["integrationids"] == [1234567]
    [entry] = audit.trail(Stack.load("prod")).read(10)
    assert (entry.who, entry.command, entry.outcome) == ("alice", "pingdom sync", "ok")
    assert not list(state_root.rglob("secrets*")), "an AWS stack's secret was looked for on this laptop"


def test_the_program_shares_the_pingdom_token_only_where_pingdom_is_on():
    from tests._infra_plans import planned_parameters

    parameters = planned_parameters("prod", "staging")
    assert parameters["/photostack/prod/pingdomToken"][0] == "SecureString"
    assert "/photostack/staging/pingdomToken" not in parameters
