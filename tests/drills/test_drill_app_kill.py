"""Drill: SIGKILL one app instance (gunicorn master and workers) under load through nginx.

What is measured: GETs and likes (POST, logged in) through nginx — passive health checks, and
`proxy_next_upstream` on errors, which nginx applies to a POST only if it was not sent yet — < 0.1%
may fail; the fast health watcher pages (local HTTPS PagerDuty endpoint) and resolves once a
converge has restarted the instance.
"""

from __future__ import annotations

import pytest

from ops.remote import check_converged
from tests.drills.appclient import ApiClient
from tests.drills.faults import kill_tree, nginx_port, wait_for, watcher_paging_to
from tests.drills.httpload import HttpLoad

pytestmark = [pytest.mark.onebox, pytest.mark.drill]
DEDUP = "onebox/onebox/health/app-0"


def test_killed_app_instance_fails_few_requests_pages_and_resolves(converged, pagerduty_server, test_certificates):
    stack = converged
    liker = ApiClient(nginx_port(stack)).sign_up("killdrill")
    status, photo = liker.post_photo("liked under fire")
    assert status == 201, photo
    like = f"POST /api/photos/{photo['id']}/like"
    with watcher_paging_to(stack, pagerduty_server.url, str(test_certificates.ca_bundle), "R0UTINGKEY0000000000000000000000"):
        load = HttpLoad(nginx_port(stack), ["/health", "/api/users/alice", like, "/api/users/bob"], clients=4,
                        max_seconds=90, headers={"Cookie": liker.cookie_header()}).start()
        try:
            load.wait_for_more(200)  # flowing before the kill
            killed = kill_tree("/run/photostack/app-8001.pid")
            paged = wait_for(lambda: pagerduty_server.incidents.get(DEDUP) == "triggered", 30)
            load.wait_for_more(300)  # load keeps hitting nginx while app-0 is gone
        finally:
            result = load.stop()
        check_converged(stack.converge(stack.hosts, {"app"}), "restart app-0")  # converge brings it back
        wait_for(lambda: pagerduty_server.incidents.get(DEDUP) == "resolved", 40)
    print(f"\nkilled pids {killed}: {result.describe()}")
    assert paged  # and the load ran through the outage: 300 requests after the page
    assert result.failed_ratio < 0.001, result.describe()
    assert liker.call("GET", f"/api/photos/{photo['id']}")[1]["like_count"] == 1  # a like counts once
    trigger = next(e for e in pagerduty_server.events if e["event_action"] == "trigger" and e["dedup_key"] == DEDUP)
    assert "app-0" in trigger["payload"]["summary"] and "web_node_down" in str(trigger.get("links", ""))
