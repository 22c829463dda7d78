"""The Pulumi program for an AWS stack, as one function of the stack config.

`build` is what `__main__.py` runs under the Pulumi engine and what the offline plan and the tests
run under Pulumi's mocks: one program, so what is tested is what is deployed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.alerting import Alerting, AlertingArgs
from infra.backup_naming import backup_bucket_name
from infra.backups import Backups, BackupsArgs
from infra.config import GENERATED_SECRETS, NAMESPACE, ConfigError, StackConfig
from infra.dns import Certificate, CertificateArgs, SiteAlias, SiteAliasArgs, zone_id, zone_name
from infra.fleet import Bastion, BastionArgs, DataVolume, Fleet, FleetArgs, ubuntu_ami
from infra.host_layout import POSTGRES_DATA
from infra.load_balancer import LoadBalancer, LoadBalancerArgs
from infra.monitoring import Uptime, UptimeArgs
from infra.network import Network, NetworkArgs
from infra.record_parameters import ROLE_RECORDS, RecordParameters, RecordParametersArgs
from infra.secrets_store import ROLE_SECRETS, SecretParameters, SecretParametersArgs, rotation_arns
from infra.security import SecurityGroups, SecurityGroupsArgs
from infra.sharding import ShardMap
from infra.targets import target_of
from infra.targets.aws import pack_shard_map
from infra.storage import Storage, StorageArgs
from infra.topology import Node, nodes
from infra.alerts import audit_log_group, silences_path

MUNIN_MASTER_INSTANCE_TYPE = "t3.small"


def instance_type(config: StackConfig, role: str) -> str:
    """The EC2 instance type of a role's hosts."""
    if role in ("nginx", "app", "worker"):
        return getattr(config.fleets, role).instance_type
    if role == "munin_master":
        return MUNIN_MASTER_INSTANCE_TYPE
    return getattr(config, role).instance_type


def nodes_by_role(config: StackConfig) -> dict[str, list[Node]]:
    """The stack's nodes grouped by role, in topology order."""
    groups: dict[str, list[Node]] = defaultdict(list)
    for node in nodes(config):
        groups[node.role].append(node)
    return dict(groups)


def silences_arn(stack: str, region: str) -> pulumi.Output[str]:
    """ARN of the SSM path holding the stack's silences (what GetParametersByPath is checked against)."""
    account = aws.get_caller_identity_output().account_id
    return pulumi.Output.concat(f"arn:aws:ssm:{region}:", account, f":parameter{silences_path(stack).rstrip('/')}")


def audit_log_arn(stack: str, region: str) -> pulumi.Output[str]:
    """ARN of the log streams of the stack's audit trail (what FilterLogEvents is checked against)."""
    account = aws.get_caller_identity_output().account_id
    return pulumi.Output.concat(f"arn:aws:logs:{region}:", account, f":log-group:{audit_log_group(stack)}:*")


def build(config: StackConfig, stack: str) -> dict[str, Any]:
    """Declare every resource of an AWS stack; returns the stack outputs (the inventory)."""
    target = target_of(config)
    if not target.provisioned_by_pulumi():
        raise ConfigError([f"{NAMESPACE}:target: stack '{stack}' targets {target.name}; the Pulumi program provisions aws stacks only"])
    secrets = pulumi.Config(NAMESPACE)
    zones = config.availability_zones

    network = Network("network", NetworkArgs(stack, config.vpc_cidr, zones))
    groups = SecurityGroups(
        "security", SecurityGroupsArgs(stack, network.vpc_id, config.vpc_cidr, config.admin_cidrs)
    )
    storage = Storage("storage", StorageArgs(stack))
    backups = Backups("backups", BackupsArgs(stack, backup_bucket_name(config, stack), config.backups.bucket_noncurrent_days,
                                             config.backups.snapshot_retain))
    alerting = Alerting(
        "alerting",
        AlertingArgs(
            stack,
            config.environment,
            config.alerting.pagerduty,
            config.alerting.pagerduty_escalation_policy,
            config.alerting.sentry,
            config.alerting.sentry_organization,
            config.alerting.sentry_team,
        ),
    )
    values = {name: secrets.require_secret(name) for name in GENERATED_SECRETS}
    if alerting.routing_key is not None:
        values["pagerdutyRoutingKey"] = alerting.routing_key
    if alerting.sentry_dsn is not None:
        values["sentryDsn"] = alerting.sentry_dsn
    if config.monitoring.dashboard_password is not None:  # nginx and the monitoring host read it
        values["dashboardPassword"] = secrets.require_secret("dashboardPassword")
    # Only `ops pingdom sync` reads it (no role's instance profile may): every operator syncs one check.
    if config.monitoring.pingdom:
        values["pingdomToken"] = secrets.require_secret("pingdomToken")
    # Optional: only `ops deploy` reads it (no role's instance profile may), to create Sentry releases.
    auth_token = secrets.get_secret("sentryAuthToken")
    if auth_token is not None:
        values["sentryAuthToken"] = auth_token
    parameters = SecretParameters("secrets", SecretParametersArgs(stack, values))
    records = RecordParameters("records", RecordParametersArgs(stack, pack_shard_map(ShardMap.initial(config)), storage.media_bucket))

    ami = ubuntu_ami(config.ami)
    bastion = Bastion(
        "bastion",
        BastionArgs(stack, ami, network.public_subnet_ids[zones[0]], groups.ids["bastion"], config.ssh_public_key),
    )
    fleets = {
        role: Fleet(
            f"fleet-{role}",
            FleetArgs(
                stack=stack,
                role=role,
                nodes=role_nodes,
                instance_type=instance_type(config, role),
                ami_id=ami,
                subnet_ids=network.private_subnet_ids,
                security_group_id=groups.ids[role],
                region=config.region,
                release_bucket=storage.release_bucket,
                release_bucket_arn=storage.release_bucket_arn,
                bundle_key=storage.bundle_key,
                secret_arns=[arn for s in ROLE_SECRETS[role] if s in parameters.arns
                             for arn in (parameters.arns[s], *rotation_arns(s, parameters.arns[s]))],
                record_arns=[records.arns[r] for r in ROLE_RECORDS[role]],
                media_bucket_arn=storage.media_bucket_arn if role in ("app", "worker") else None,
                data_volume=DataVolume(config.postgres.volume_gb, POSTGRES_DATA) if role == "postgres" else None,
                backup_bucket_arn=backups.bucket_arn if role == "postgres" else None,
                key_name=bastion.key_name,
                silences_arn=silences_arn(stack, config.region) if role == "munin_master" else None,
                audit_log_arn=audit_log_arn(stack, config.region) if role == "munin_master" else None,
                # First boot goes out through the NAT routes, fetches the bundle, reads its secrets
                # and the records its roles render from in SSM.
                boot_dependencies=[network, storage, parameters, records],
            ),
        )
        for role, role_nodes in nodes_by_role(config).items()
    }
    backups.grant([fleets["postgres"].role_arn])

    zone = zone_id(zone_name(config))
    certificate = Certificate("certificate", CertificateArgs(stack, config.domain, zone))
    lb = LoadBalancer(
        "lb",
        LoadBalancerArgs(
            stack,
            network.vpc_id,
            [network.public_subnet_ids[z] for z in zones],
            groups.ids["lb"],
            certificate.arn,
            fleets["nginx"].instance_ids,
            config.alerting.runbook_base_url,
            alerting.alarm_topic_arn,
            dashboard_target=next(iter(fleets["munin_master"].instance_ids.values()), None) if "munin_master" in fleets else None,
            dashboard_login=config.monitoring.dashboard_login,
            dashboard_client_secret=(secrets.require_secret("dashboardOidcClientSecret")
                                     if config.monitoring.dashboard_login is not None else None),
            dashboard_password=config.monitoring.dashboard_password is not None,
        ),
    )
    site = SiteAlias("site", SiteAliasArgs(config.domain, zone, lb.dns_name, lb.zone_id))
    if config.monitoring.pingdom:
        Uptime("uptime", UptimeArgs(config.domain, secrets.require_secret("pingdomToken"), site,
                                    config.monitoring.pingdom_pagerduty_integration_id))

    return {
        "hosts": {role: fleet.private_ips for role, fleet in fleets.items()},
        "lbDnsName": lb.dns_name,
        "bastion": bastion.public_ip,
        "url": f"https://{config.domain}/",
        "dashboards": {"munin": f"https://{config.domain}/munin/", "wallboard": f"https://{config.domain}/wallboard/"},
        "mediaBucket": storage.media_bucket,
        "backupBucket": backups.bucket,
    }
