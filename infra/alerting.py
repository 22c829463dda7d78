"""Alerting as code: the PagerDuty service pages go to, and the Sentry project errors go to.

Each integration creates its own key: the Events v2 routing key and the Sentry DSN come from the
resources created here (as Pulumi secrets) and go to SSM for the hosts, so they cannot drift.
CloudWatch alarms page the same service through an SNS topic (`infra/cloudwatch_paging.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_pagerduty as pagerduty
import pulumiverse_sentry as sentry

from infra.cloudwatch_paging import CloudWatchPaging, CloudWatchPagingArgs
from infra.alerts import project_slug

DEFAULT_ESCALATION_POLICY = "Default"


@dataclass(frozen=True)
class AlertingArgs:
    """Inputs of alerting."""

    stack: str
    """Stack name, for tags."""
    environment: str
    """Environment name in the service and project names."""
    pagerduty: bool
    """Create the PagerDuty service, its Events v2 integration and the CloudWatch alarms' topic."""
    escalation_policy: str | None
    """PagerDuty escalation policy id; none: the account's policy named "Default"."""
    sentry: bool
    """Create the Sentry project and its client key."""
    sentry_organization: str
    """Sentry organization slug."""
    sentry_team: str
    """Sentry team that owns the project."""


class Alerting(pulumi.ComponentResource):
    """PagerDuty service + Events v2 integration + CloudWatch paging; Sentry project + key."""

    routing_key: pulumi.Output[str] | None
    sentry_dsn: pulumi.Output[str] | None
    alarm_topic_arn: pulumi.Output[str] | None
    """SNS topic that pages on-call; alarms use it for their ALARM and OK actions (none without PagerDuty)."""

    def __init__(self, name: str, args: AlertingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("photostack:alerting:Alerting", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.routing_key = self.sentry_dsn = self.alarm_topic_arn = None
        if args.pagerduty:
            policy = args.escalation_policy or pagerduty.get_escalation_policy_output(name=DEFAULT_ESCALATION_POLICY).id
            service = pagerduty.Service(
                f"{name}-service",
                name=f"photostack {args.environment}",
                description=f"Pages of the photostack {args.environment} stack (runbooks linked in each alert).",
                escalation_policy=policy,
                # Urgency from each event's severity: critical and error page now (high),
                # warning and info wait for working hours (low).
                incident_urgency_rule={"type": "constant", "urgency": "severity_based"},
                opts=child,
            )
            integration = pagerduty.ServiceIntegration(
                f"{name}-events-v2",
                name="photostack alert sender (Events API v2)",
                service=service.id,
                type="events_api_v2_inbound_integration",
                opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["integration_key"]),
            )
            self.routing_key = pulumi.Output.secret(integration.integration_key)
            paging = CloudWatchPaging(
                f"{name}-cloudwatch", CloudWatchPagingArgs(args.stack, args.environment, service.id), child
            )
            self.alarm_topic_arn = paging.topic_arn
        if args.sentry:
            project = sentry.SentryProject(
                f"{name}-sentry",
                organization=args.sentry_organization,
                teams=[args.sentry_team],
                name=project_slug(args.environment),
                slug=project_slug(args.environment),
                platform="python-django",
                opts=child,
            )
            key = sentry.SentryKey(
                f"{name}-sentry-key",
                organization=args.sentry_organization,
                project=project.slug,
                name=f"photostack {args.environment} hosts",
                opts=child,
            )
            self.sentry_dsn = pulumi.Output.secret(key.dsn_public)
        self.register_outputs({"alarm_topic_arn": self.alarm_topic_arn})
