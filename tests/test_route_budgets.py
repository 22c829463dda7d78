"""The routes' budgets: every location nginx proxies to the app tells the app its read timeout
(X-Request-Budget, ms), so the app's database deadline is that route's; nginx time values
convert as nginx reads them; the deadline counts from nginx's stamp, or from arrival for a
retry that arrives older than its budget."""

from __future__ import annotations

import re

import pytest

from infra.config import load_stack_config
from infra.inventory import onebox_hosts
from roles.context import RoleContext
from roles.nginx.role import desired, duration_ms
from roles.engine.resources import File

SITE = "/etc/nginx/conf.d/photostack.conf"


def site(overrides: dict | None = None) -> str:
    config = load_stack_config("onebox")
    if overrides:
        config = config.model_copy(update={"roles": {**config.roles, "nginx": overrides}})
    hosts = tuple(onebox_hosts(config))
    ctx = RoleContext(config, "onebox", hosts[0], hosts, lambda name: f"secret-{name}")
    return next(r.content for r in desired(ctx).resources if isinstance(r, File) and r.path == SITE)


def proxied_locations(text: str) -> dict[str, tuple[str, str]]:
    """location → (its proxy_read_timeout, its X-Request-Budget) for every proxied location."""
    found = {}
    for match in re.finditer(r"location ([^{]+)\{(.*?)\n    \}", text, re.S):
        body = match.group(2)
        if "proxy_pass" in body:
            timeout = re.search(r"proxy_read_timeout (\S+);", body)
            budget = re.search(r'proxy_set_header X-Request-Budget "(\d+)";', body)
            found[match.group(1).strip()] = (timeout and timeout.group(1), budget and budget.group(1))
    return found


def test_every_proxied_route_sends_its_read_timeout_as_its_budget(state_root):
    locations = proxied_locations(site())
    assert {"/", "~ ^/api/photos/[0-9]+/like$", "= /api/photos"} <= set(locations)
    for location, (timeout, budget) in locations.items():
        assert timeout and budget and duration_ms(timeout) == int(budget), location
    assert locations["~ ^/api/photos/[0-9]+/like$"][1] == "1000"


def test_a_stack_override_of_a_route_timeout_moves_its_budget(state_root):
    locations = proxied_locations(site({"nginx_read_timeout_quick": "1500ms"}))
    assert locations["~ ^/api/photos/[0-9]+/like$"] == ("1500ms", "1500")
    assert locations["= /api/photos"][1] == "10000"  # the others keep theirs


@pytest.mark.parametrize(("value", "ms"), [("1s", 1000), ("500ms", 500), ("10", 10_000), ("1m30s", 90_000), ("2h", 7_200_000)])
def test_nginx_time_values(value, ms):
    assert duration_ms(value) == ms


@pytest.mark.parametrize("value", ["", "1.5s", "1x", "s", "1 s"])
def test_what_is_not_an_nginx_time_value_is_named(value):
    with pytest.raises(ValueError, match=re.escape(repr(value))):
        duration_ms(value)


def test_the_deadline_counts_from_nginx_stamp_less_the_margin():
    from app.deadline import MARGIN_S, deadline_for

    assert deadline_for(1.0, 0.2, now=100.0) == pytest.approx(100.0 - 0.2 + 1.0 - MARGIN_S)
    assert deadline_for(1.0, None, now=100.0) == pytest.approx(100.0 + 1.0 - MARGIN_S)  # no stamp: from now
    # Older than its budget on arrival: nginx's retry after a timeout elsewhere, a budget of its own.
    assert deadline_for(1.0, 1.1, now=100.0) == pytest.approx(100.0 + 1.0 - MARGIN_S)
    assert deadline_for(0.4, 0.0, now=100.0) == pytest.approx(100.3)  # the margin: at most a quarter
