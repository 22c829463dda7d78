"""The public entry: an ALB terminating TLS (ACM certificate) in front of the nginx tier.

Port 80 only redirects to HTTPS; targets are the nginx instances, healthy while `/health` answers 200.
The dashboards sit behind the operator login: listener rules send `/munin/` (to the monitoring
host's nginx) and `/wallboard/` (to the app, through nginx) only after the ALB's OIDC action;
a stack without a login gets a 403 there instead (the policy pack refuses a dashboard rule that
forwards without authenticating first).
A CloudWatch alarm per target group pages (runbook web_node_down) while any target is unhealthy
and resolves the incident when all are healthy again.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config import DashboardLogin
from infra.tagging import LOGIN_TAG, PASSWORD_LOGIN, tags
from infra.alerts import runbook_url

ROLE = "lb"
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# A node's own check (app/health.py): nginx passes it to an app server, so an nginx host is in
# service while it can reach one; a shard or Redis that is down (down for every host alike) takes
# no host out. 2 good probes bring a host in, 2 bad ones (20 s) take it out.
HEALTH_CHECK = {
    "path": "/health/node",
    "protocol": "HTTP",
    "port": "traffic-port",
    "matcher": "200",
    "interval": 10,
    "timeout": 5,
    "healthy_threshold": 2,
    "unhealthy_threshold": 2,
}
# The health watcher raises the same failure as plugin "health" (monitoring/agents/health_watcher.py):
# both paths link the runbook that alert links.
HEALTH_PLUGIN = "health"
# The dashboards' paths, each with its listener rule priority (lower wins; the default action
# forwards everything else to nginx).
DASHBOARD_PATHS = {"munin": (10, ["/munin", "/munin/*"]), "wallboard": (11, ["/wallboard", "/wallboard/*"])}
# An operator stays logged in for a working day.
LOGIN_SESSION_S = 12 * 3600


@dataclass(frozen=True)
class LoadBalancerArgs:
    """Inputs of the load balancer."""

    stack: str
    """Stack name, for tags."""
    vpc_id: pulumi.Input[str]
    """VPC of the target group."""
    subnet_ids: list[pulumi.Input[str]]
    """Public subnets, one per AZ."""
    security_group_id: pulumi.Input[str]
    """The LB's group: 443 and 80 from the world, out only to nginx."""
    certificate_arn: pulumi.Input[str]
    """Validated ACM certificate of the domain."""
    targets: dict[str, pulumi.Input[str]]
    """nginx node name to instance id."""
    runbook_base_url: str
    """Where runbook links point (alerting.runbookBaseUrl)."""
    alarm_topic_arn: pulumi.Input[str] | None = None
    """SNS topic the unhealthy-targets alarm pages through; none: the alarm has no actions."""
    target_port: int = 80
    """Port nginx listens on."""
    dashboard_target: pulumi.Input[str] | None = None
    """Instance id of the monitoring host (its nginx serves /munin/ on `target_port`)."""
    dashboard_login: DashboardLogin | None = None
    """The operator login in front of the dashboards; none: they answer 403."""
    dashboard_client_secret: pulumi.Input[str] | None = None
    """The OIDC client's secret (a Pulumi secret), with `dashboard_login`."""
    dashboard_password: bool = False
    """Instead of `dashboard_login`: nginx asks for the password login (monitoring.dashboardPassword),
    so the rules forward, tagged as such for the policy pack."""


class LoadBalancer(pulumi.ComponentResource):
    """ALB, the nginx target group, its attachments and unhealthy alarm, the HTTPS listener and the HTTP redirect."""

    dns_name: pulumi.Output[str]
    zone_id: pulumi.Output[str]

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("photostack:lb:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        lb = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=False,
            subnets=args.subnet_ids,
            security_groups=[args.security_group_id],
            drop_invalid_header_fields=True,
            tags=tags(args.stack, ROLE, "alb"),
            opts=child,
        )
        group = aws.lb.TargetGroup(
            f"{name}-nginx",
            port=args.target_port,
            protocol="HTTP",
            target_type="instance",
            vpc_id=args.vpc_id,
            health_check=HEALTH_CHECK,
            deregistration_delay=30,
            tags=tags(args.stack, ROLE, "nginx-targets"),
            opts=child,
        )
        for node, instance_id in sorted(args.targets.items()):
            aws.lb.TargetGroupAttachment(
                f"{name}-{node}", target_group_arn=group.arn, target_id=instance_id, port=args.target_port, opts=child
            )
        self._unhealthy_alarm(name, args, lb, group, "nginx")
        https = aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=lb.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=TLS_POLICY,
            certificate_arn=args.certificate_arn,
            default_actions=[{"type": "forward", "target_group_arn": group.arn}],
            tags=tags(args.stack, ROLE, "https"),
            opts=child,
        )
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=lb.arn,
            port=80,
            protocol="HTTP",
            default_actions=[
                {"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"}}
            ],
            tags=tags(args.stack, ROLE, "http-redirect"),
            opts=child,
        )
        self._dashboards(name, args, https, group)
        self.dns_name = lb.dns_name
        self.zone_id = lb.zone_id
        self.register_outputs({"dns_name": self.dns_name, "zone_id": self.zone_id})

    def _dashboards(self, name: str, args: LoadBalancerArgs, https: aws.lb.Listener, nginx: aws.lb.TargetGroup) -> None:
        """Listener rules of /munin/ and /wallboard/: log in, then forward; or 403 without a login."""
        child = pulumi.ResourceOptions(parent=self)
        targets = {"wallboard": nginx}
        if args.dashboard_target is not None:
            munin = aws.lb.TargetGroup(
                f"{name}-munin",
                port=args.target_port,
                protocol="HTTP",
                target_type="instance",
                vpc_id=args.vpc_id,
                # /munin/ may ask for the password login: the dashboard site's own /health never does.
                health_check={**HEALTH_CHECK, "path": "/health"},
                tags=tags(args.stack, ROLE, "munin-targets"),
                opts=child,
            )
            aws.lb.TargetGroupAttachment(f"{name}-munin-master", target_group_arn=munin.arn,
                                         target_id=args.dashboard_target, port=args.target_port, opts=child)
            targets["munin"] = munin
        for what, (priority, paths) in DASHBOARD_PATHS.items():
            aws.lb.ListenerRule(
                f"{name}-{what}-rule",
                listener_arn=https.arn,
                priority=priority,
                conditions=[{"path_pattern": {"values": paths}}],
                actions=_dashboard_actions(args, targets.get(what)),
                tags={**tags(args.stack, ROLE, what), **({LOGIN_TAG: PASSWORD_LOGIN} if args.dashboard_password else {})},
                opts=child,
            )

    def _unhealthy_alarm(
        self, name: str, args: LoadBalancerArgs, lb: aws.lb.LoadBalancer, group: aws.lb.TargetGroup, targets: str
    ) -> None:
        # ALARM pages, OK resolves: PagerDuty's CloudWatch integration keys the incident on the alarm.
        actions = [args.alarm_topic_arn] if args.alarm_topic_arn is not None else []
        link = runbook_url(args.runbook_base_url, HEALTH_PLUGIN, targets)
        aws.cloudwatch.MetricAlarm(
            f"{name}-{targets}-unhealthy",
            # The alarm name is the incident title: say which stack and what is down.
            name=f"photostack-{args.stack}-web_node_down-{targets}",
            alarm_description=f"One or more {targets} targets fail the load balancer's /health check. Runbook: {link}",
            namespace="AWS/ApplicationELB",
            metric_name="UnHealthyHostCount",
            dimensions={"TargetGroup": group.arn_suffix, "LoadBalancer": lb.arn_suffix},
            # ALB metrics are per minute: one minute with any unhealthy target pages (worst case
            # ≈ 20 s to unhealthy + one 60 s period). No data (nothing registered) is no outage.
            statistic="Maximum",
            period=60,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
            treat_missing_data="notBreaching",
            alarm_actions=actions,
            ok_actions=actions,
            tags=tags(args.stack, ROLE, f"{targets}-unhealthy"),
            opts=pulumi.ResourceOptions(parent=self),
        )


def _dashboard_actions(args: LoadBalancerArgs, target: aws.lb.TargetGroup | None) -> list[dict]:
    """Authenticate (OIDC) then forward, or forward to the nginx that asks for the password login;
    a 403 when there is no login or nothing to forward to."""
    login = args.dashboard_login
    if (login is None and not args.dashboard_password) or target is None:
        why = ("no operator login configured (monitoring.dashboardLogin or dashboardPassword)" if target is not None
               else "no monitoring host")
        return [{"type": "fixed-response", "fixed_response": {
            "content_type": "text/plain", "status_code": "403", "message_body": f"dashboard: {why}\n"}}]
    if login is None:
        return [{"type": "forward", "target_group_arn": target.arn}]
    return [
        {"type": "authenticate-oidc", "order": 1, "authenticate_oidc": {
            "issuer": login.issuer,
            "authorization_endpoint": login.authorization_endpoint,
            "token_endpoint": login.token_endpoint,
            "user_info_endpoint": login.user_info_endpoint,
            "client_id": login.client_id,
            "client_secret": args.dashboard_client_secret,
            "on_unauthenticated_request": "authenticate",
            "session_timeout": LOGIN_SESSION_S,
        }},
        {"type": "forward", "order": 2, "target_group_arn": target.arn},
    ]
