"""The AWS fast path for web_node_down: the target group's alarm pages PagerDuty through an encrypted SNS topic."""

from __future__ import annotations

import json

from infra.config import load_stack_config
from infra.offline_plan import is_secret, placeholder_secret, reveal
from infra.plan_render import render_plan
from tests._infra_plans import dependency, plan_of

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "aws:sns/topic:Topic"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
KEY = "aws:kms/key:Key"
INTEGRATION = "pagerduty:index/serviceIntegration:ServiceIntegration"


def _unhealthy_alarms(plan):
    return [a for a in plan.of_type(ALARM) if a.inputs["metricName"] == "UnHealthyHostCount"]


def test_prod_alarm_pages_while_a_target_is_unhealthy_and_resolves_when_none_is():
    plan = plan_of("prod")
    (alarm,) = _unhealthy_alarms(plan)
    settings = {k: alarm.inputs[k] for k in (
        "namespace", "statistic", "period", "evaluationPeriods", "datapointsToAlarm",
        "comparisonOperator", "threshold", "treatMissingData",
    )}
    assert settings == {
        "namespace": "AWS/ApplicationELB",
        "statistic": "Maximum",
        "period": 60,
        "evaluationPeriods": 1,
        "datapointsToAlarm": 1,
        "comparisonOperator": "GreaterThanOrEqualToThreshold",
        "threshold": 1,
        "treatMissingData": "notBreaching",
    }
    (topic,) = plan.of_type(TOPIC)
    assert alarm.inputs["alarmActions"] == alarm.inputs["okActions"] == [topic.outputs["arn"]]
    assert [dependency(plan, alarm, prop).urn for prop in ("alarmActions", "okActions")] == [topic.urn, topic.urn]
    assert alarm.inputs["name"] == "photostack-prod-web_node_down-nginx"


def test_alarm_watches_the_nginx_target_group_of_the_alb():
    plan = plan_of("prod")
    (alarm,) = _unhealthy_alarms(plan)
    (https,) = [r for r in plan.of_type("aws:lb/listener:Listener") if r.inputs["protocol"] == "HTTPS"]
    (site,) = [a["targetGroupArn"] for a in https.inputs["defaultActions"] if a["type"] == "forward"]
    (group,) = [g for g in plan.of_type("aws:lb/targetGroup:TargetGroup") if g.outputs["arn"] == site]
    (alb,) = plan.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert alarm.inputs["dimensions"] == {"TargetGroup": group.outputs["arnSuffix"], "LoadBalancer": alb.outputs["arnSuffix"]}
    assert set(alarm.property_dependencies["dimensions"]) == {group.urn, alb.urn}
    check = group.inputs["healthCheck"]
    assert (check["path"], check["interval"], check["unhealthyThreshold"], check["healthyThreshold"]) == ("/health/node", 10, 2, 2)


def test_alarm_description_links_the_web_node_down_runbook_under_the_configured_base():
    (alarm,) = _unhealthy_alarms(plan_of("prod"))
    base = load_stack_config("prod").alerting.runbook_base_url
    assert f"{base}/web_node_down.md" in alarm.inputs["alarmDescription"]


def test_topic_is_subscribed_to_the_cloudwatch_integration_of_the_pagerduty_service():
    plan = plan_of("prod")
    (topic,), (subscription,) = plan.of_type(TOPIC), plan.of_type(SUBSCRIPTION)
    integrations = {i.name: i for i in plan.of_type(INTEGRATION)}
    cloudwatch = integrations["alerting-cloudwatch-integration"]
    ((token, args),) = [call for call in plan.lookups if call[0] == "pagerduty:index/getVendor:getVendor"]
    assert args == {"name": "Amazon CloudWatch"}
    assert cloudwatch.inputs["vendor"] == "PVENDOR-AmazonCloudWatch"
    events = integrations["alerting-events-v2"]
    assert cloudwatch.inputs["service"] == events.inputs["service"]  # the same service pages the same people
    assert (subscription.inputs["protocol"], subscription.inputs["topic"]) == ("https", topic.outputs["arn"])
    assert subscription.inputs["endpointAutoConfirms"] is True
    assert dependency(plan, subscription, "endpoint").urn == cloudwatch.urn


def test_subscription_endpoint_is_built_from_the_integration_key_and_stays_secret():
    plan = plan_of("prod")
    (subscription,) = plan.of_type(SUBSCRIPTION)
    endpoint = subscription.inputs["endpoint"]
    assert is_secret(endpoint)
    key = placeholder_secret("pagerdutyCloudwatchKey")
    assert reveal(endpoint) == f"https://events.pagerduty.com/integration/{key}/enqueue"
    rendered = render_plan(plan)
    assert "aws:sns/topicSubscription:TopicSubscription alerting-cloudwatch-pagerduty protocol=https endpoint=[secret]" in rendered
    assert key not in rendered and "events.pagerduty.com" not in rendered


def test_topic_is_encrypted_with_its_own_key_that_cloudwatch_may_use():
    plan = plan_of("prod")
    (topic,), (key,) = plan.of_type(TOPIC), plan.of_type(KEY)
    assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"] and "alias/aws/sns" not in topic.inputs["kmsMasterKeyId"]
    assert key.inputs["enableKeyRotation"] is True
    statements = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}
    cloudwatch = statements["CloudWatchAlarmsPublish"]
    assert cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert cloudwatch["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    assert statements["AccountAdministersTheKey"]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    for resource in (topic, key):
        assert resource.inputs["tags"]["photostack:stack"] == "prod" and resource.inputs["tags"]["photostack:role"] == "alerting"


def test_a_stack_without_pagerduty_keeps_the_alarm_but_has_nothing_to_page():
    plan = plan_of("staging")
    assert load_stack_config("staging").alerting.pagerduty is False
    assert plan.of_type(TOPIC) == plan.of_type(SUBSCRIPTION) == plan.of_type(KEY) == plan.of_type(INTEGRATION) == []
    (alarm,) = _unhealthy_alarms(plan)
    assert alarm.inputs["alarmActions"] == alarm.inputs["okActions"] == []
    assert not [call for call in plan.lookups if call[0].startswith("pagerduty:")]
