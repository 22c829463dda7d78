"""The lab's security groups (lab/security_groups.py), read from the lab's own plan: the rules a
host's namespace gets are its instance's groups', with referenced groups' members at their
addresses (no lab needed: the rules are built, not applied)."""

from __future__ import annotations

import ipaddress

import pytest

from infra.config import load_stack_config
from lab import security_groups
from lab.planned_instances import LabPlan, lab_plan

GATEWAY, BALANCER = "10.213.0.1", "10.213.31.254"


@pytest.fixture(scope="module")
def plan() -> LabPlan:
    return lab_plan(load_stack_config("lab"), "lab")


def _accepts(rules: list[list[str]], chain: str, peer: str, port: int) -> bool:
    """What `chain` does with a new TCP connection to (or from) `peer` on `port`: the verdict of its
    first matching rule, as iptables walks them."""
    for rule in rules:
        if rule[0] != chain or "conntrack" in rule or "lo" in rule:
            continue
        options = dict(zip(rule[1::2], rule[2::2]))
        address = options.get("-s") or options.get("-d")
        if address and ipaddress.ip_address(peer) not in ipaddress.ip_network(address):
            continue
        if options.get("-p", "tcp") != "tcp":
            continue
        low, _, high = options.get("--dport", "0:65535").partition(":")
        if not int(low) <= port <= int(high or low):
            continue
        return options["-j"] == "ACCEPT"
    return False


def _groups(plan: LabPlan) -> security_groups.SecurityGroups:
    groups = security_groups.SecurityGroups.from_plan(plan.plan, GATEWAY, BALANCER)
    assert security_groups.SecurityGroups.from_json(groups.to_json()) == groups  # what the lab's AWS gets
    return groups


def _addresses(plan: LabPlan) -> dict[str, str]:
    return {i.node: i.private_ip for i in plan.instances}


def test_a_database_host_admits_postgres_only_from_the_app_worker_and_postgres_groups(plan):
    addresses = _addresses(plan)
    rules = _groups(plan).host_rules("postgres-0-primary", addresses)
    inbound = security_groups.CHAIN_IN
    assert _accepts(rules, inbound, addresses["app-0"], 5432)
    assert _accepts(rules, inbound, addresses["worker-0"], 5432)
    assert _accepts(rules, inbound, addresses["postgres-0-replica1"], 5432)  # streaming replication
    assert not _accepts(rules, inbound, addresses["nginx-0"], 5432)
    assert not _accepts(rules, inbound, addresses["app-0"], 22)  # SSH only through the bastion
    assert _accepts(rules, inbound, addresses["bastion"], 22)


def test_nginx_admits_the_load_balancer_and_the_health_watcher_and_no_one_else(plan):
    addresses = _addresses(plan)
    rules = _groups(plan).host_rules("nginx-0", addresses)
    inbound = security_groups.CHAIN_IN
    assert _accepts(rules, inbound, BALANCER, 80)
    assert _accepts(rules, inbound, addresses["munin_master-0"], 80)
    assert not _accepts(rules, inbound, addresses["app-0"], 80)


def test_egress_is_the_groups_egress_rules_only(plan):
    addresses = _addresses(plan)
    bastion = _groups(plan).host_rules("bastion", addresses)
    app = _groups(plan).host_rules("app-0", addresses)
    outbound = security_groups.CHAIN_OUT
    # The bastion's one egress rule is SSH into the VPC: no HTTPS out, so not the lab's AWS either.
    assert _accepts(bastion, outbound, addresses["app-0"], 22)
    assert not _accepts(bastion, outbound, addresses["app-0"], 5432)
    assert not any(rule[0] == outbound and rule[1:3] == ["-d", GATEWAY] for rule in bastion)
    # An app host may reach HTTPS anywhere: the lab's AWS and registries behind the gateway.
    assert any(rule[0] == outbound and rule[1:3] == ["-d", GATEWAY] for rule in app)
    assert ["-d", security_groups.METADATA] in [rule[1:3] for rule in bastion]  # IMDS is never filtered


def test_referenced_groups_follow_their_members_addresses(plan):
    """A replacement host at a new address is admitted where its group is."""
    addresses = {**_addresses(plan), "app-1": "10.213.9.9"}
    rules = _groups(plan).host_rules("postgres-0-primary", addresses)
    assert _accepts(rules, security_groups.CHAIN_IN, "10.213.9.9", 5432)
