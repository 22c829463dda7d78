"""Alerting as code: the PagerDuty service pages go to, and the Sentry project errors go to.

Each integration creates its own key: the Events v2 routing key and the Sentry DSN come from the
resources created here (as Pulumi secrets) and go to SSM for the hosts, so they cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_pagerduty as pagerduty
import pulumiverse_sentry as sentry

DEFAULT_ESCALATION_POLICY = "Default"


@dataclass(frozen=True)
class AlertingArgs:
    """Inputs of alerting."""

    environment: str
    """Environment name in the service and project names."""
    pagerduty: bool
    """Create the PagerDuty service and its Events v2 integration."""
    escalation_policy: str | None
    """PagerDuty escalation policy id; none: the account's policy named "Default"."""
    sentry: bool
    """Create the Sentry project and its client key."""
    sentry_organization: str
    """Sentry organization slug."""
    sentry_team: str
    """Sentry team that owns the project."""


class Alerting(pulumi.ComponentResource):
    """PagerDuty service + Events v2 integration; Sentry project + key."""

    routing_key: pulumi.Output[str] | None
    sentry_dsn: pulumi.Output[str] | None

    def __init__(self, name: str, args: AlertingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("photostack:alerting:Alerting", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.routing_key = self.sentry_dsn = None
        if args.pagerduty:
            policy = args.escalation_policy or pagerduty.get_escalation_policy_output(name=DEFAULT_ESCALATION_POLICY).id
            service = pagerduty.Service(
                f"{name}-service",
                name=f"photostack {args.environment}",
                description=f"Pages of the photostack {args.environment} stack (runbooks linked in each alert).",
                escalation_policy=policy,
                opts=child,
            )
            integration = pagerduty.ServiceIntegration(
                f"{name}-events-v2",
                name="photostack alert sender (Events API v2)",
                service=service.id,
                type="events_api_v2_inbound_integration",
                opts=child,
            )
            self.routing_key = pulumi.Output.secret(integration.integration_key)
        if args.sentry:
            project = sentry.SentryProject(
                f"{name}-sentry",
                organization=args.sentry_organization,
                teams=[args.sentry_team],
                name=f"photostack-{args.environment}",
                slug=f"photostack-{args.environment}",
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
        self.register_outputs({})
