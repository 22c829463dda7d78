"""A local PagerDuty Events API v2 endpoint (HTTPS): `POST /v2/enqueue`.

Validates events the way the real API documents (routing_key, event_action, dedup_key,
payload.summary/source/severity, links) and answers 202 `{"status": "success", "dedup_key": ...}`,
or 400 `{"status": "invalid event", "errors": [...]}`. `fail_next(429, n)` makes it throttle the
next n requests; `stop()`/`start()` make it unreachable and bring it back on the same port.
`incidents` folds accepted events by dedup_key, like PagerDuty does.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

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


class _Handler(JsonHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        fake: PagerDutyServer = self.fake
        body = self.read_body()
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
