"""The dashboards on the lab, through its load balancer (root, under the lab lock): `up` prints
their URLs; /munin/ (the monitoring host) and /wallboard/ (the app, through nginx) ask for the
password login of Pulumi.lab.yaml and serve the pages to it."""

from __future__ import annotations

import boto3
import pytest
import requests

from infra.secrets_store import parameter_name
from lab import fleet, lb
from tests.e2e.conftest import wait_until
from tests.lab_stack.conftest import KEEP, STACK, operator_environment

pytestmark = pytest.mark.lab
# Debian's /etc/cron.d/munin builds the pages every 5 minutes: the first build after the boot.
MUNIN_PAGES_TIMEOUT_S = 330


def test_the_dashboards_ask_for_the_password_login(lab_up, lab_green, tmp_path):
    balancer = fleet.load_balancer(lab_green.plan, lab_green.config)
    login = lab_green.config.monitoring.dashboard_password
    assert login is not None
    if not KEEP:  # a kept lab's `up` output is not at hand
        assert f"wallboard: {balancer.url}wallboard/" in lab_up.stdout
        assert f"{balancer.url}munin/" in lab_up.stdout and parameter_name(STACK, "dashboardPassword") in lab_up.stdout

    environment = operator_environment(tmp_path)
    ssm = boto3.client("ssm", endpoint_url=environment["AWS_ENDPOINT_URL"], region_name=lab_green.config.region,
                       aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"])
    password = ssm.get_parameter(Name=parameter_name(STACK, "dashboardPassword"), WithDecryption=True)["Parameter"]["Value"]
    (monitoring,) = [i.node for i in lab_green.plan.instances if i.role == "munin_master"]
    assert wait_until(lambda: lb.server_states().get(monitoring) == "UP", timeout=60), lb.server_states()

    def get(path: str, auth: tuple[str, str] | None = None) -> requests.Response:
        return requests.get(f"{balancer.url.rstrip('/')}{path}", headers={"Host": lab_green.config.domain}, auth=auth,
                            verify=str(lb.ca_certificate()), timeout=15, allow_redirects=False)

    for path in ("/munin/", "/wallboard/", "/wallboard/data.json"):
        refused = get(path)
        assert refused.status_code == 401, (path, refused.status_code)
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="photostack dashboards"'
        assert get(path, (login.user, password + "x")).status_code == 401
    board = get("/wallboard/", (login.user, password))
    assert board.status_code == 200 and "<title>photostack live</title>" in board.text
    data = get("/wallboard/data.json", (login.user, password))
    assert data.status_code == 200 and isinstance(data.json(), dict)
    assert wait_until(lambda: get("/munin/", (login.user, password)).status_code == 200, timeout=MUNIN_PAGES_TIMEOUT_S)
    assert "munin" in get("/munin/", (login.user, password)).text.lower()
    # The site itself stays open to users.
    assert get("/health").status_code == 200
