"""A local PagerDuty Events API v2 endpoint (HTTPS): `POST /v2/enqueue`.

Validates events the way the real API documents (routing_key, event_action, dedup_key,
payload.summary/source/severity, links) and answers 202 `{"status": "success", "dedup_key": ...}`,
or 400 `{"status": "invalid event", "errors": [...]}`. `fail_next(429, n)` makes it throttle the
next n requests; `stop()`/`start()` make it unreachable and bring it back on the same port.
`incidents` folds accepted events by dedup_key, like PagerDuty does.

The same server also answers the part of the REST API v2 that service-wide silences use
(`services` looked up by name, `maintenance_windows` created, listed as ongoing, deleted): every
request needs `Authorization: Token token=<rest_token>`, a POST needs a `From` email, answers
carry the entity wrappers and pagination fields the real API sends.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.base import JsonHandler, LocalServer

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")


def validate_event(event: Any) -> list[str]:
    """Problems with an Events v2 body, phrased like the API's `errors` list."""
    if not isinstance(event, dict):
        return ["Event object is invalid"]
    errors = []
    key = event.get("routing_key")
    if not isinstance(key, str) or not key.strip():
        errors.append("'routing_key' is missing or blank")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup_key:
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            errors.append("'payload' is missing or not an object")
        else:
            for field in ("summary", "source"):
                if not isinstance(payload.get(field), str) or not payload[field].strip():
                    errors.append(f"'payload.{field}' is missing or blank")
            if len(str(payload.get("summary", ""))) > 1024:
                errors.append("'payload.summary' is longer than 1024 characters")
            if payload.get("severity") not in SEVERITIES:
                errors.append("'payload.severity' is invalid (expected critical, error, warning or info)")
            if "custom_details" in payload and not isinstance(payload["custom_details"], dict | list | str):
                errors.append("'payload.custom_details' is invalid")
    links = event.get("links", [])
    if not isinstance(links, list) or not all(isinstance(link, dict) and link.get("href") for link in links):
        errors.append("'links' must be a list of objects with 'href'")
    return errors


def _iso(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class _Handler(JsonHandler):
    def _rest_allowed(self) -> bool:
        if self.headers.get("Authorization") != f"Token token={self.fake.rest_token}":
            self.send_json(401, {"error": {"message": "Unauthorized", "code": 2006}})
            return False
        return True

    def _page(self, name: str, items: list[dict]) -> None:
        self.send_json(200, {name: items, "limit": 100, "offset": 0, "more": False, "total": len(items)})

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        fake: PagerDutyServer = self.fake
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self._rest_allowed():
            return
        if url.path == "/services":
            wanted = (query.get("query") or [""])[0].lower()
            self._page("services", [s for s in fake.services if wanted in s["name"].lower()])
        elif url.path == "/maintenance_windows":
            services = set(query.get("service_ids[]", []))
            now = dt.datetime.now(dt.UTC)
            with fake.lock:
                windows = [w for w in fake.windows.values()
                           if (not services or services & {s["id"] for s in w["services"]})
                           and (query.get("filter") != ["ongoing"] or _iso(w["start_time"]) <= now < _iso(w["end_time"]))]
            self._page("maintenance_windows", windows)
        else:
            self.send_json(404, {"error": {"message": "Not Found", "code": 2100}})

    def do_DELETE(self) -> None:  # noqa: N802 - http.server naming
        fake: PagerDutyServer = self.fake
        if not self._rest_allowed():
            return
        window_id = self.path.removeprefix("/maintenance_windows/")
        with fake.lock:
            found = fake.windows.pop(window_id, None)
        if found is None:
            self.send_json(404, {"error": {"message": "Not Found", "code": 2100}})
            return
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _post_window(self, body: bytes) -> None:
        fake: PagerDutyServer = self.fake
        if not self._rest_allowed():
            return
        if "@" not in (self.headers.get("From") or ""):
            self.send_json(400, {"error": {"message": "Invalid Input Provided", "code": 2001,
                                           "errors": ["A valid From header is required"]}})
            return
        window = json.loads(body).get("maintenance_window") or {}
        known = {s["id"] for s in fake.services}
        try:
            valid = _iso(window["start_time"]) < _iso(window["end_time"]) and window["services"] and all(
                s.get("type") == "service_reference" and s.get("id") in known for s in window["services"])
        except (KeyError, TypeError, ValueError):
            valid = False
        if not valid:
            self.send_json(400, {"error": {"message": "Invalid Input Provided", "code": 2001}})
            return
        made = {**window, "id": "PMW" + uuid.uuid4().hex[:6].upper(), "created_by": self.headers["From"]}
        with fake.lock:
            fake.windows[made["id"]] = made
        self.send_json(201, {"maintenance_window": made})

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        fake: PagerDutyServer = self.fake
        body = self.read_body()
        if self.path == "/maintenance_windows":
            self._post_window(body)
            return
        if self.path != "/v2/enqueue":
            self.send_json(404, {"status": "not found"})
            return
        with fake.lock:
            fake.requests += 1
            if fake._failures:
                status = fake._failures.pop(0)
                self.send_json(status, {"status": "throttle event" if status == 429 else "error",
                                        "message": "try again later"})
                return
        try:
            event = json.loads(body)
        except ValueError:
            self.send_json(400, {"status": "invalid event", "message": "Event object is invalid",
                                 "errors": ["body is not JSON"]})
            return
        errors = validate_event(event)
        if errors:
            with fake.lock:
                fake.rejected.append(event)
            self.send_json(400, {"status": "invalid event", "message": "Event object is invalid",
                                 "errors": errors})
            return
        dedup_key = event.get("dedup_key") or uuid.uuid4().hex
        with fake.lock:
            fake.events.append({**event, "dedup_key": dedup_key})
        self.send_json(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})


class PagerDutyServer(LocalServer):
    """The fake Events v2 endpoint; pass the TLS context of a test certificate."""

    handler = _Handler

    def __init__(self, ssl_context: Any, port: int = 0):
        super().__init__(ssl_context=ssl_context, port=port)
        self.events: list[dict[str, Any]] = []
        self.rejected: list[Any] = []
        self.requests = 0
        self._failures: list[int] = []
        # REST API v2: the token it accepts, the services it knows, the maintenance windows made.
        self.rest_token = "fake-rest-token"
        self.services: list[dict[str, Any]] = []
        self.windows: dict[str, dict[str, Any]] = {}

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next `times` requests with `status` (e.g. 429 or 503) before accepting."""
        with self.lock:
            self._failures += [status] * times

    @property
    def incidents(self) -> dict[str, str]:
        """dedup_key -> latest state ("triggered", "acknowledged", "resolved"), as PagerDuty folds them."""
        states = {"trigger": "triggered", "acknowledge": "acknowledged", "resolve": "resolved"}
        folded: dict[str, str] = {}
        with self.lock:
            for event in self.events:
                key = event["dedup_key"]
                if event["event_action"] == "trigger" or key in folded:
                    folded[key] = states[event["event_action"]]
        return folded
