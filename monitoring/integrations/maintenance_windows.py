"""Service-wide silences of an AWS stack: PagerDuty maintenance windows on the stack's service.

During a window PagerDuty opens no incident for the service, whichever sender triggers it (the
munin master, the health watcher, CloudWatch): every operator sees the window in PagerDuty and in
`ops silence --list`. The `pagerduty` package's `RestApiV2Client` does the HTTP.

Environment: `PAGERDUTY_TOKEN` (a REST API key, the one Pulumi's PagerDuty provider reads) and
`PAGERDUTY_USER_EMAIL` (the `From` of the request: PagerDuty records who opened the window).
Tests point it at a local fake: `PHOTOSTACK_PAGERDUTY_API_URL` and `PHOTOSTACK_PAGERDUTY_API_CA`.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
from dataclasses import dataclass

API_URL_ENV = "PHOTOSTACK_PAGERDUTY_API_URL"
API_CA_ENV = "PHOTOSTACK_PAGERDUTY_API_CA"
TOKEN_ENV = "PAGERDUTY_TOKEN"
FROM_ENV = "PAGERDUTY_USER_EMAIL"


class WindowError(RuntimeError):
    """PagerDuty cannot be asked (no token, no such service, an API error): one line."""


@dataclass(frozen=True)
class Window:
    """One maintenance window."""

    id: str
    start: str
    end: str
    description: str


def service_name(environment: str) -> str:
    """The PagerDuty service of a stack (infra/alerting.py names it)."""
    return f"photostack {environment}"


def client_from_env():  # -> pagerduty.RestApiV2Client
    """A REST API client from the environment; WindowError naming what is missing."""
    import pagerduty

    token, sender = os.environ.get(TOKEN_ENV), os.environ.get(FROM_ENV)
    missing = [name for name, value in ((TOKEN_ENV, token), (FROM_ENV, sender)) if not value]
    if missing:
        raise WindowError(f"service-wide silences on AWS are PagerDuty maintenance windows: set {' and '.join(missing)}")
    options = {}
    if os.environ.get(API_CA_ENV):
        options["verify"] = ssl.create_default_context(cafile=os.environ[API_CA_ENV])
    return pagerduty.RestApiV2Client(token, default_from=sender, base_url=os.environ.get(API_URL_ENV), **options)


def _service_id(client, environment: str) -> str:
    import pagerduty

    name = service_name(environment)
    try:
        found = client.find("services", name)
    except pagerduty.Error as exc:
        raise WindowError(f"PagerDuty: looking up service {name!r}: {exc}") from None
    if not found:
        raise WindowError(f"PagerDuty has no service named {name!r}; is alerting.pagerduty on and the stack up?")
    return found["id"]


def open_window(client, environment: str, seconds: int, description: str, now: dt.datetime | None = None) -> Window:
    """A maintenance window on the stack's service from now for `seconds`."""
    import pagerduty

    start = now or dt.datetime.now(dt.UTC)
    body = {"maintenance_window": {
        "type": "maintenance_window",
        "start_time": start.isoformat(timespec="seconds"),
        "end_time": (start + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds"),
        "description": description,
        "services": [{"id": _service_id(client, environment), "type": "service_reference"}],
    }}
    try:
        made = client.rpost("maintenance_windows", json=body)
    except pagerduty.Error as exc:
        raise WindowError(f"PagerDuty: opening a maintenance window: {exc}") from None
    return Window(made["id"], made["start_time"], made["end_time"], made.get("description", ""))


def ongoing(client, environment: str) -> list[Window]:
    """The service's ongoing maintenance windows."""
    params = {"service_ids[]": [_service_id(client, environment)], "filter": "ongoing"}
    return [Window(w["id"], w["start_time"], w["end_time"], w.get("description", ""))
            for w in client.list_all("maintenance_windows", params=params)]


def end_all(client, environment: str) -> int:
    """End every ongoing window of the service (PagerDuty ends an ongoing window on DELETE)."""
    windows = ongoing(client, environment)
    for window in windows:
        client.rdelete(f"maintenance_windows/{window.id}")
    return len(windows)
