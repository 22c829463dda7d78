"""Fleet drills on the lab (issue 20), each under users' load through the load balancer: per drill
the requests, failed %, requests over their route's budget and acknowledged writes lost.

Goals: app host partition < 0.1 % failed; every request within its route's budget; 0 lost;
primary partition: writes back ≤ 15 s after the operator runs `ops failover`, 0 lost; a broker
host lost: 0 acknowledged tasks lost; replace-node of a dead app or Memcached host back in service ≤ 3 min;
Redis primary lost: served again after `ops redis-failover`, 0 lost, every post in its feed.
Run as root under the lab lock with the lab up and green (`ops --stack lab up`):
    flock /tmp/lab.lock .venv/bin/python bench/fleet_drills.py [lossy-link] [app-partition] [primary-partition]
        [broker-lost] [replace-app] [replace-memcached] [redis-lost]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.lab_stack import drills  # noqa: E402
from tests.lab_stack.conftest import LabSession  # noqa: E402
from tests.lab_stack.fleetload import sign_up  # noqa: E402

DRILLS = {"lossy-link": drills.lossy_link, "app-partition": drills.app_host_partitioned,
          "primary-partition": drills.primary_partitioned, "broker-lost": drills.rabbitmq_node_lost,
          "replace-app": drills.replace_dead_app_host, "replace-memcached": drills.replace_dead_memcached_host,
          "redis-lost": drills.redis_primary_lost}


def main() -> None:
    chosen = sys.argv[1:] or list(DRILLS)
    unknown = [name for name in chosen if name not in DRILLS]
    if unknown:
        sys.exit(f"unknown drill(s) {', '.join(unknown)}: choose from {', '.join(DRILLS)}")
    lab = LabSession()  # the lab that is up, and users' clients through its load balancer
    plan, make_client = lab.plan, lab.client_factory()
    placement = drills.Placement.stored()  # users on every physical shard
    users = sign_up(make_client, 4, placement.of_user, placement.shard_map.physical_shards)
    budgets = ", ".join(f"{kind} {seconds:.1f} s" for kind, seconds in drills.route_budgets().items())
    print(f"route budgets (nginx's, plus {drills.CLIENT_SLACK_S:.0f} s of client slack): {budgets}")
    for name in chosen:
        result = DRILLS[name](plan, users, make_client)
        print(f"\n{name}:")
        for what, value in result.figures().items():
            print(f"  {what + ':':<40} {value}")


if __name__ == "__main__":
    main()
