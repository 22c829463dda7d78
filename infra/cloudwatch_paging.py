"""CloudWatch alarms page through PagerDuty: an encrypted SNS topic subscribed to PagerDuty's CloudWatch integration.

An alarm whose actions (ALARM and OK) publish to `topic_arn` opens a PagerDuty incident and
resolves it again. The topic is encrypted with a key of its own, not with the AWS-managed
`alias/aws/sns`: that key's policy cannot be changed, it does not let CloudWatch use it, and an
alarm publishing to a topic encrypted with it fails silently (nothing pages).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_pagerduty as pagerduty

from infra.tagging import tags
from infra.alerts import web_tier_alarm_name, web_tier_key

ROLE = "alerting"
CLOUDWATCH_VENDOR = "Amazon CloudWatch"
PAGERDUTY_ENQUEUE = "https://events.pagerduty.com/integration/{key}/enqueue"


def key_policy(account_id: str) -> str:
    """Policy of the topic's KMS key: the account administers it; CloudWatch alarms of this account encrypt with it."""
    statements = [
        {
            "Sid": "AccountAdministersTheKey",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
            "Action": "kms:*",
            "Resource": "*",
        },
        {
            "Sid": "CloudWatchAlarmsPublish",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Resource": "*",
            # Only on behalf of alarms in this account (confused deputy).
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


@dataclass(frozen=True)
class CloudWatchPagingArgs:
    """Inputs of the CloudWatch-to-PagerDuty path."""

    stack: str
    """Stack name, for tags."""
    environment: str
    """Environment name in the integration's name."""
    service_id: pulumi.Input[str]
    """The PagerDuty service the alarms page."""


class CloudWatchPaging(pulumi.ComponentResource):
    """PagerDuty's Amazon CloudWatch integration, the KMS key, the SNS topic and its HTTPS subscription."""

    topic_arn: pulumi.Output[str]

    def __init__(self, name: str, args: CloudWatchPagingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("photostack:alerting:CloudWatchPaging", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        integration = pagerduty.ServiceIntegration(
            f"{name}-integration",
            name=f"photostack {args.environment} CloudWatch alarms",
            service=args.service_id,
            vendor=pagerduty.get_vendor_output(name=CLOUDWATCH_VENDOR).id,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["integration_key"]),
        )
        key = aws.kms.Key(
            f"{name}-key",
            description=f"photostack {args.stack}: encrypts the SNS topic CloudWatch alarms page through",
            enable_key_rotation=True,
            policy=aws.get_caller_identity_output().account_id.apply(key_policy),
            tags=tags(args.stack, ROLE, "pages-key"),
            opts=child,
        )
        topic = aws.sns.Topic(
            f"{name}-topic",
            display_name=f"photostack {args.stack} pages",
            kms_master_key_id=key.arn,
            tags=tags(args.stack, ROLE, "pages"),
            opts=child,
        )
        # The integration key routes events to the service: whoever has it can page on-call.
        endpoint = pulumi.Output.secret(integration.integration_key.apply(lambda k: PAGERDUTY_ENQUEUE.format(key=k)))
        aws.sns.TopicSubscription(
            f"{name}-pagerduty",
            topic=topic.arn,
            protocol="https",
            endpoint=endpoint,
            # PagerDuty confirms the subscription itself; without this Pulumi would wait for a human.
            endpoint_auto_confirms=True,
            opts=child,
        )
        # The web tier's alarm and the health watcher's probes of the same nodes: one incident
        # (infra/alerts.py web_tier_key). The rule gives the alarm's events (ALARM and OK)
        # the watcher's dedup key; every other event keeps its own.
        pagerduty.EventOrchestrationService(
            f"{name}-orchestration",
            service=args.service_id,
            enable_event_orchestration_for_service=True,
            sets=[{"id": "start", "rules": [{
                "label": "web_node_down: the load balancer's alarm joins the health watcher's incident",
                "conditions": [{"expression": f"event.summary matches part '{web_tier_alarm_name(args.stack)}'"}],
                "actions": {"extractions": [{"target": "event.dedup_key", "template": web_tier_key(args.stack)}]},
            }]}],
            catch_all={"actions": {}},
            opts=child,
        )
        self.topic_arn = topic.arn
        self.register_outputs({"topic_arn": self.topic_arn})
