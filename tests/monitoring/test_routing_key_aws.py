"""On AWS the monitoring host's alert pipeline pages with the routing key `pulumi up` wrote to SSM
(there is no secrets file on AWS hosts): moto over HTTP for SSM, the local PagerDuty Events fake."""

from __future__ import annotations

import boto3
import pytest

from infra.secrets_store import parameter_name
from monitoring.alerts.alert_pipeline import AlertPipeline
from infra.alerts import Alert

KEY = "R" * 32


@pytest.fixture
def aws(moto_account, tmp_path, monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_ENDPOINT_URL": moto_account, "AWS_CONFIG_FILE": str(tmp_path / "none"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                        "PHOTOSTACK_STATE_DIR": str(tmp_path / "state")}.items():
        monkeypatch.setenv(name, value)
    return boto3.client("ssm", region_name="us-east-1")


def test_the_monitoring_host_pages_with_the_key_from_ssm(aws, pagerduty_server, test_certificates, monkeypatch):
    monkeypatch.setenv("PHOTOSTACK_PAGERDUTY_URL", pagerduty_server.url)
    monkeypatch.setenv("PHOTOSTACK_PAGERDUTY_CA", str(test_certificates.ca_bundle))
    aws.put_parameter(Name=parameter_name("prod", "pagerdutyRoutingKey"), Value=KEY, Type="SecureString")
    pipeline = AlertPipeline.for_stack("prod")
    assert pipeline.note == ""
    pipeline.trigger(Alert("prod", "db-0", "postgres_connections", "used", "critical", "190", {"critical": "180"}))
    assert [event["routing_key"] for event in pagerduty_server.events] == [KEY]


def test_without_the_parameter_pages_stay_local_and_say_why(aws):
    pipeline = AlertPipeline.for_stack("prod")
    assert pipeline.sender is None and "pagerdutyRoutingKey secret is missing" in pipeline.note
