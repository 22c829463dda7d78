"""Fleet drills on the lab under users' load through its load balancer (issue 20; root, under the
lab lock). The procedures and their figures are in drills.py (bench/fleet_drills.py prints them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab_stack import drills
from tests.lab_stack.fleetload import Users, sign_up

pytestmark = pytest.mark.lab
USERS = 4
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def users(lab) -> Users:
    """The drills' users, signed up once for every drill of the module, on every physical shard."""
    make_client = lab.green().client_factory()
    placement = drills.Placement.stored()
    return sign_up(make_client, USERS, placement.of_user, placement.shard_map.physical_shards)


def test_a_lossy_link_to_the_shard_costs_requests_at_most_their_budget(lab_green, lab_client, users):
    """Drill 6: 20 % packet loss between the app and worker hosts and every shard's primary for 30 s.
    No request waits longer than its route's budget, the error rate is measured, nothing
    acknowledged is lost, and once the link heals every request succeeds again."""
    result = drills.lossy_link(lab_green.plan, users, lab_client)
    figures = result.figures()
    print(figures)
    assert result.dropped_packets > 0, "the fault dropped nothing: the drill did not exercise a lossy link"
    assert len(result.during) >= 50, figures
    assert result.over_budget == [], [(s.kind, round(s.seconds, 2), s.status) for s in result.over_budget[:10]]
    assert result.lost == [], result.lost[:10]
    assert result.after and drills.LoadReport.failed(result.after) == [], result.report.describe(result.after)


def test_an_app_host_partitioned_is_taken_out_with_under_a_thousandth_failed(lab_green, lab_client, users):
    """Drill 2: one of the two app hosts cut off for 30 s, the process on it running on. nginx (the
    load balancer's targets) stops sending it requests after its connect timeouts; < 0.1 % of the
    users' requests fail, none waits longer than its budget, nothing acknowledged is lost."""
    result = drills.app_host_partitioned(lab_green.plan, users, lab_client)
    figures = result.figures()
    print(figures)
    assert len(result.during) >= 50, figures
    assert result.failed_ratio < 0.001, figures
    assert result.over_budget == [], [(s.kind, round(s.seconds, 2), s.status) for s in result.over_budget[:10]]
    assert result.lost == [], result.lost[:10]
    assert result.after and drills.LoadReport.failed(result.after) == [], result.report.describe(result.after)
    # The page: raised by the health watcher while the host was cut off, with a runbook that
    # exists, and resolved once it answered again.
    assert result.page is not None, figures
    runbook = result.page["runbook"]
    assert runbook and (REPO / "runbooks" / runbook.rsplit("/", 1)[-1]).is_file(), result.page
    assert result.resolve is not None, figures


def test_a_partitioned_primary_is_fenced_through_ec2_and_loses_no_acknowledged_write(lab_green, lab_client, users):
    """Drill 1: shard 0's primary cut off under load (the users live on both shards), still running
    and believing it is primary. `ops failover` powers its machine off through EC2 and promotes the
    replica, and writes to shard 0 are acknowledged again; nothing acknowledged is lost; started
    again, the old primary stays fenced (its cluster does not run) until `ops rebuild-replica`
    makes it a replica; then a converge finds nothing to change."""
    result = drills.primary_partitioned(lab_green.plan, users, lab_client)
    figures = result.figures()
    print(figures)
    assert result.failover.returncode == 0, result.failover.stdout + result.failover.stderr
    assert "through EC2" in result.failover.stdout, result.failover.stdout
    assert result.outage_from_command_s is not None, figures  # writes came back
    assert result.lost == [], result.lost[:10]
    assert result.after and drills.LoadReport.failed(result.after) == [], result.report.describe(result.after)
    assert result.fenced_at_restart, figures
    assert result.accepted_write_at_restart == "", result.accepted_write_at_restart
    assert result.rebuild is not None and result.rebuild.returncode == 0, result.rebuild.stdout + result.rebuild.stderr
    assert drills.current_primary(lab_green.plan) != result.old
    check = result.converge_check
    assert check is not None and check.returncode == 0, check.stdout + check.stderr  # 3: changes pending


def test_a_broker_host_lost_keeps_posts_working_and_loses_no_task(lab_green, lab_client, users):
    """Drill 3: one of the three RabbitMQ hosts powered off for 30 s under load. Queues are
    mirrored on every node (classic mirroring, synchronised automatically) and publishes wait for
    the broker's confirm, so posts keep working through the other nodes and every acknowledged
    post gets its thumbnail; EC2's recovery brings the node back into the cluster."""
    result = drills.rabbitmq_node_lost(lab_green.plan, users, lab_client)
    figures = result.figures()
    print(figures)
    assert len(result.cluster_during) == 2, figures  # the lost node is out, the others carry on
    posts = [s for s in result.during if s.kind == "post"]
    assert posts and len(drills.LoadReport.failed(posts)) / len(posts) < 0.05, figures
    assert result.lost == [], result.lost[:10]
    assert result.tasks_lost == [], result.tasks_lost[:10]
    assert result.rejoined_after_s is not None and len(result.cluster_after) == 3, figures
    assert result.after and drills.LoadReport.failed(result.after) == [], result.report.describe(result.after)
    check = result.converge_check
    assert check is not None and check.returncode == 0, check.stdout + check.stderr  # 3: changes pending


def test_a_lost_redis_primary_is_failed_over_by_ops_with_feeds_rebuilt_and_nothing_acknowledged_lost(
        lab_green, lab_client, users):
    """Drill 5: the Redis primary's host powered off at once under load. `ops redis-failover`
    powers it off through EC2, promotes the replica, repoints the app and workers and drops the
    feeds; users are served again (their sessions were replicated), every acknowledged photo and
    like is in the shards, every acknowledged post is in its poster's (rebuilt) feed; the old
    machine started again becomes a replica of the new primary with `ops converge`, and a converge
    check then finds nothing to change."""
    result = drills.redis_primary_lost(lab_green.plan, users, lab_client)
    figures = result.figures()
    print(figures)
    assert result.failover.returncode == 0, result.failover.stdout + result.failover.stderr
    assert "through EC2" in result.failover.stdout, result.failover.stdout
    assert result.new != result.old, figures
    assert result.served_again_s is not None, figures
    assert result.feeds_dropped >= len(users), figures  # every user read their feed before the loss
    assert result.lost == [], result.lost[:10]
    assert result.not_in_feeds == [], result.not_in_feeds[:10]
    assert result.after and drills.LoadReport.failed(result.after) == [], result.report.describe(result.after)
    assert result.rejoin is not None and result.rejoin.returncode == 0, result.rejoin.stdout + result.rejoin.stderr
    assert result.rejoined_s is not None, figures
    check = result.converge_check
    assert check is not None and check.returncode == 0, check.stdout + check.stderr  # 3: changes pending


@pytest.mark.lab_replaces
def test_a_dead_app_host_is_replaced_by_ops_and_back_in_service_with_nothing_lost(lab_green, lab_client, users):
    """Drill 4: an app host powered off at once under load; `ops --stack lab replace-node` terminates
    it, launches its replacement from the launch template (a new address: the lab's AWS gives a
    new one), which boots from its user_data, and converges its peers to it: nginx's upstream
    holds the new address and the app answers there. Nothing acknowledged is lost, and the load is
    clean once it is back."""
    assert_replaced(drills.replace_dead_app_host(lab_green.plan, users, lab_client))


@pytest.mark.lab_replaces
def test_a_dead_memcached_host_is_replaced_by_ops_while_the_app_serves_from_misses(lab_green, lab_client, users):
    """Drill 4 for the cache: the Memcached host powered off at once under load; the app answers
    from the shards meanwhile (the cache fails open); `ops --stack lab replace-node` brings a new
    host at a new address and converges the app and worker hosts to it, restarting their
    processes in turn. Nothing acknowledged is lost, and the load is clean once it is back."""
    assert_replaced(drills.replace_dead_memcached_host(lab_green.plan, users, lab_client))


def assert_replaced(result: drills.ReplaceResult) -> None:
    """What drill 4 asks of every replaced host: `ops replace-node` succeeded and converged its
    peers, the new host is at a new address and back in service, nothing acknowledged was lost,
    and the load is clean once it is back."""
    figures = result.figures()
    print(figures)
    assert result.ops_exit == 0, result.ops_output
    assert "converged to it" in " ".join(result.ops_output.split()), result.ops_output
    assert result.new_address and result.new_address != result.old_address, figures
    assert result.back_in_service_s is not None, figures
    assert result.lost == [], result.lost[:10]
    assert result.after and drills.LoadReport.failed(result.after) == [], result.report.describe(result.after)
