"""The lab, booted for real from the plan of Pulumi.lab.yaml (root; run under `flock /tmp/lab.lock`).

`ops --stack lab up` boots one systemd-nspawn host per planned instance; `ops --stack lab status`
then takes the AWS path unchanged: the inventory from EC2 tags (the lab's moto), host keys pinned
from each instance's console output, SSH through the bastion. `ops --stack lab down` leaves
nothing behind, also after an `up` killed half-way.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from infra.config import load_stack_config
from infra.host_layout import POSTGRES_DATA
from infra.topology import nodes
from lab import fleet, hosts, lb
from lab.planned_instances import lab_plan
from roles.postgres.cluster import Cluster
from tests.e2e.conftest import wait_until
from tests.lab_stack.conftest import FIRST_BOOT_TIMEOUT_S, KEEP, STACK, boot_log, operator_environment, ops
from tests.lab_stack.drills import current_primary, in_host, shard_members

pytestmark = pytest.mark.lab


def test_up_boots_every_planned_instance(lab_up):
    assert lab_up.returncode == 0, lab_up.stdout + lab_up.stderr
    planned = [i.node for i in lab_plan(load_stack_config(STACK), STACK).instances]
    for node in planned:
        assert f"{node} " in lab_up.stdout and "up in" in lab_up.stdout
        assert hosts.cgroup_pids("unified", node), f"{node} has no running processes: {hosts.console_text(node)[-2000:]}"
    assert f"{len(planned)} host(s) up, 0 failed" in lab_up.stdout


def test_every_host_boots_green_from_its_user_data(lab_booted):
    """Each host, the app and worker hosts included, runs its rendered user_data to exit 0:
    bundle fetched, the release built with it installed (no git on a host), roles converged."""
    planned = {i.node: i.role for i in lab_plan(load_stack_config(STACK), STACK).instances}
    assert {"app", "worker", "nginx", "postgres"} <= set(planned.values())
    assert set(lab_booted) == set(planned)
    for node, result in lab_booted.items():
        assert result is not None, f"{node}: user_data still running after {FIRST_BOOT_TIMEOUT_S} s\n{boot_log(node)}"
        assert result[0] == 0, f"{node}: user_data exit {result[0]}\n{boot_log(node)}"


def test_a_second_converge_changes_nothing(lab_green, tmp_path):
    """Every host converged at its first boot; converging them again (a check, from the operator's
    machine through the bastion) finds nothing to change and nothing failing on any of them."""
    result = ops("converge", "--check", "--json", env=operator_environment(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    hosts_seen = json.loads(result.stdout)
    assert {h["host"] for h in hosts_seen} == {i.node for i in lab_green.plan.instances if i.role != "bastion"}
    assert [(h["host"], h["changed"], h["failed"]) for h in hosts_seen if h["changed"] or h["failed"]] == []


def test_each_shard_member_keeps_its_data_on_its_own_volume(lab_green):
    """The primary's and the replica's data dirs are on the host's data volume (the lab's loop device,
    shown as a Nitro instance shows its EBS volume), formatted and mounted by the postgres role at
    the data path, by UUID in /etc/fstab: not on the root disk that goes with the instance."""
    config = lab_green.config
    members = [n for n in nodes(config) if n.role == "postgres"]
    pg = config.postgres
    assert pg.physical_shards == 2, "the lab has two shards: each is checked"
    assert sorted((n.attrs["shard"], n.attrs["replica"]) for n in members) == [
        (shard, replica) for shard in range(pg.physical_shards) for replica in range(pg.replicas_per_shard + 1)]
    for node in members:
        data_dir = Cluster(config.postgres.version, node.attrs["shard"], node.attrs["replica"], "", 0).data_dir
        mounted = in_host(node.name, f"findmnt -n -o SOURCE,FSTYPE,TARGET -T {data_dir}")
        assert mounted.stdout.split() == [f"/dev/{hosts.NITRO_DEVICE}", "ext4", POSTGRES_DATA], (node.name, mounted)
        assert in_host(node.name, f"test -f {data_dir}/PG_VERSION").returncode == 0, node.name
        fstab = in_host(node.name, f"findmnt --fstab -n -o SOURCE,OPTIONS -M {POSTGRES_DATA}").stdout.split()
        uuid = in_host(node.name, f"blkid -p -o value -s UUID /dev/{hosts.NITRO_DEVICE}").stdout.strip()
        assert fstab == [f"UUID={uuid}", "defaults,nofail"] and uuid, (node.name, fstab)


def test_the_rabbitmq_nodes_form_one_cluster_and_streaming_crosses_hosts(lab_green):
    """Every broker host runs in one cluster with all the others (classic peer discovery at first
    boot, whichever order the hosts came up in); each shard's replica streams from that shard's
    primary, on another host (the current one: a failover drill may have swapped them)."""
    config = load_stack_config(STACK)
    brokers = [n.name for n in nodes(config) if n.role == "rabbitmq"]
    assert len(brokers) == 3, brokers
    plan = lab_plan(config, STACK)
    addresses = {i.node: i.private_ip for i in plan.instances}
    for broker in brokers:
        done = in_host(broker, "rabbitmqctl -q cluster_status --formatter json")
        assert done.returncode == 0, done.stderr
        running = sorted(json.loads(done.stdout)["running_nodes"])
        assert running == sorted(f"rabbit@{addresses[b]}" for b in brokers), (broker, running)
    streaming = []
    for shard in range(config.postgres.physical_shards):
        primary = current_primary(plan, shard)
        for member in shard_members(shard):
            if member == primary:
                continue
            done = in_host(member, "runuser -u postgres -- psql -XAtq -p 5432 -d postgres -c "
                                   "\"SELECT status || ' ' || sender_host FROM pg_stat_wal_receiver\"")
            assert done.returncode == 0, (member, done.stdout, done.stderr)
            assert done.stdout.split() == ["streaming", addresses[primary]], (member, primary, done.stdout)
            streaming.append(member)
    assert len(streaming) == config.postgres.physical_shards * config.postgres.replicas_per_shard, streaming


def test_status_takes_the_aws_path_with_pinned_keys(lab_up, tmp_path):
    result = ops("status", env=operator_environment(tmp_path))
    planned = [i for i in lab_plan(load_stack_config(STACK), STACK).instances if i.role != "bastion"]
    for instance in planned:
        assert instance.node in result.stdout, result.stdout + result.stderr
    known_hosts = (tmp_path / STACK / "known_hosts").read_text()
    for instance in planned:  # each pinned key is the one the host made at its first boot
        public = (hosts.host_dir(instance.node) / "upper/etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
        assert f"{instance.private_ip} {' '.join(public)}" in known_hosts


def test_the_load_balancer_takes_nginx_hosts_in_and_out_by_their_health_checks(lab_green, lab_client):
    """The ALB stand-in, at a lab address this machine routes to the bridge, serves the app over
    HTTPS once the plan's health check passes on the nginx hosts; an nginx host that stops
    answering its checks is taken out (503: no healthy target), and back in when it answers again."""
    balancer = fleet.load_balancer(lab_green.plan, lab_green.config)
    domain = lab_green.config.domain
    assert hosts.routes_to_bridge(balancer.address)
    (target,) = [i for i in lab_green.plan.instances if i.role == "nginx"]
    assert wait_until(lambda: lb.server_states().get(target.node) == "UP", timeout=60), lb.server_states()
    client = lab_client()
    assert client.request("GET", "/health")[0] == 200
    assert client.json("GET", "/api/me")[0] == 401  # the app itself answered, through nginx
    plain = http.client.HTTPConnection(balancer.address, 80, timeout=10)  # the plan's HTTP listener redirects
    plain.request("GET", "/health", headers={"Host": domain})
    redirect = plain.getresponse()
    assert (redirect.status, redirect.getheader("Location")) == (301, f"https://{domain}/health")
    plain.close()

    netns = f"{hosts.PREFIX}-{target.node}"
    refuse = ["INPUT", "-s", balancer.address, "-p", "tcp", "--dport", "80", "-j", "REJECT", "--reject-with", "tcp-reset"]
    hosts.run("ip", "netns", "exec", netns, "iptables", "-w", "-I", *refuse)
    try:
        assert wait_until(lambda: lb.server_states()[target.node] == "DOWN", timeout=60), lb.server_states()
        assert client.request("GET", "/health")[0] == 503
    finally:
        hosts.run("ip", "netns", "exec", netns, "iptables", "-w", "-D", *refuse)
    assert wait_until(lambda: lb.server_states()[target.node] == "UP", timeout=60), lb.server_states()
    assert client.request("GET", "/health")[0] == 200


@pytest.mark.lab_teardown
def test_down_after_an_interrupted_up_leaves_nothing(lab):
    if KEEP:
        pytest.skip("PHOTOSTACK_LAB_KEEP=1: the kept lab stays up")
    lab.down()  # the session's lab, if up (this test runs last: see tests/conftest.py)
    process = subprocess.Popen([sys.executable, "-m", "ops", "--stack", STACK, "up"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    booting = {f"{hosts.PREFIX}-{i.node}" for i in lab.plan.instances if i.role != "bastion"}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not booting & set(hosts.lab_namespaces()):  # a host past the bastion
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert hosts.lab_namespaces(), "up was not interrupted while booting hosts"
    down = ops("down")
    assert down.returncode == 0, down.stderr
    assert hosts.leftovers() == []
    assert ops("down").returncode == 0  # and again: nothing to do is fine
