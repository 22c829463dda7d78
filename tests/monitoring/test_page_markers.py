"""Pages put a marker on the wallboard: once when an incident opens, not on every refresh, in the
file nginx serves beside the Munin pages (on every target: the monitoring host has no route to
Redis on AWS), and a marker that cannot be written never stops the page (local pipeline, no
PagerDuty)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from monitoring.alerts.alert_pipeline import AlertPipeline
from monitoring.alerts.alert_store import AlertStore
from infra.alerts import Alert
from monitoring.alerts.silences import SilenceStore
from monitoring.wallboard_markers import KEPT, PAGE_FILE, PAGE_URL, file_writer
from roles.munin_master.role import dashboard_site, desired
from roles.engine.resources import Directory, File
from roles.nginx.role import desired as nginx_desired
from tests.monitoring.test_munin_roles import onebox_context


def pipeline(tmp_path: Path, markers: Path) -> AlertPipeline:
    return AlertPipeline(AlertStore(tmp_path), SilenceStore(tmp_path), None, "https://runbooks.example", "onebox",
                         note="alerting.pagerduty is off", markers=file_writer(markers))


def alert(host: str) -> Alert:
    return Alert("onebox", host, "nginx", "errors_5xx", "critical", "12.00", {"critical": ":5"})


def test_an_opened_incident_marks_the_wallboard_once(tmp_path):
    markers = tmp_path / "page-markers.json"
    pages = pipeline(tmp_path, markers)
    assert pages.trigger(alert("nginx-0")).status == "local"
    pages.trigger(alert("nginx-0"))  # Munin repeats a firing alert every cycle
    (marker,) = json.loads(markers.read_text())
    assert marker["kind"] == "page" and marker["text"].startswith("5xx_rate_high: nginx-0 nginx.errors_5xx is 12.00")
    assert stat.S_IMODE(markers.stat().st_mode) == 0o644  # nginx reads it
    pages.resolve(alert("nginx-0").dedup_key)
    pages.trigger(alert("nginx-0"))  # a new incident: a new marker, newest first
    newest, oldest = json.loads(markers.read_text())
    assert newest["at"] >= oldest["at"] == marker["at"]


def test_the_marker_file_keeps_the_newest(tmp_path):
    markers = tmp_path / "page-markers.json"
    write = file_writer(markers)
    for n in range(KEPT + 3):
        write("page", f"page {n}")
    kept = json.loads(markers.read_text())
    assert len(kept) == KEPT and kept[0]["text"] == f"page {KEPT + 2}" and kept[-1]["text"] == "page 3"


def test_a_page_goes_out_when_its_marker_cannot_be_written(tmp_path):
    outcome = pipeline(tmp_path, tmp_path / "no-such-dir" / "page-markers.json").trigger(alert("nginx-1"))
    assert outcome.status == "local" and AlertStore(tmp_path).history()[-1]["status"] == "local"


def test_nginx_serves_the_marker_file_beside_the_munin_pages_on_every_target():
    ctx = onebox_context()
    directories = [r for r in desired(ctx).resources if isinstance(r, Directory) and r.path == str(Path(PAGE_FILE).parent)]
    assert [(d.owner, d.mode) for d in directories] == [("root", 0o755)]  # root's hooks write it
    location = f"location = {PAGE_URL} {{\n        alias {PAGE_FILE};"
    onebox_site = next(r.content for r in nginx_desired(ctx).resources
                       if isinstance(r, File) and "location /munin/" in r.content)
    aws_site = next(r.content for r in dashboard_site(ctx) if isinstance(r, File))
    assert location in onebox_site and location in aws_site
    assert PAGE_URL.startswith("/munin/")  # the load balancer's dashboard rule, behind the operator login
