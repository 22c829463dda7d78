"""Where the dashboards are, and the marker command `ops` runs on an app host (no hosts needed)."""

from __future__ import annotations

import shlex

from infra.config import load_stack_config
from ops.markers import mark_command
from ops.report import dashboard_urls


def test_marker_command_runs_the_wallboard_cli_of_the_current_release_with_its_text_quoted():
    command = mark_command("deploy", "v1 (was $(reboot); `x`)")
    assert shlex.split(command) == ["/usr/local/bin/photostack-run", "python", "-m", "app.wallboard", "mark",
                                    "deploy", "v1 (was $(reboot); `x`)"]


def test_dashboard_urls_of_the_onebox_and_of_aws():
    onebox = load_stack_config("onebox")
    assert dashboard_urls(onebox) == [("dashboard", "http://127.0.0.1:8080/munin/"),
                                      ("wallboard", "http://127.0.0.1:8080/wallboard/")]
    prod = load_stack_config("prod")
    assert dashboard_urls(prod) == [("dashboard", f"https://{prod.domain}/munin/"),
                                    ("wallboard", f"https://{prod.domain}/wallboard/")]
