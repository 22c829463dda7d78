"""A local Pingdom API 3.1 server: `GET/POST /checks`, `GET/PUT/DELETE /checks/{id}`.

Bearer auth (401 otherwise), Pingdom's error body `{"error": {statuscode, statusdesc,
errormessage}}`, `Req-Limit-Short`/`Req-Limit-Long` headers on every answer, and 429 on demand
via `throttle_next(n)`. Serves under `/api/3.1`; use `server.api_url` as the client's base URL.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from tests.fakes.base import JsonHandler, LocalServer

RESOLUTIONS = (1, 5, 15, 30, 60)
TYPES = ("http", "httpcustom", "tcp", "ping", "dns", "udp", "smtp", "pop3", "imap")
PREFIX = "/api/3.1"


def _ids(value: Any) -> list[int]:
    if isinstance(value, list):
        return [int(v) for v in value]
    return [int(v) for v in str(value or "").split(",") if v.strip()]


class _Handler(JsonHandler):
    def _error(self, status: int, desc: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.send_json(status, {"error": {"statuscode": status, "statusdesc": desc, "errormessage": message}},
                       {**self.fake.limit_headers(), **(headers or {})})

    def _route(self, method: str) -> None:
        fake: PingdomServer = self.fake
        body = self.read_body()
        with fake.lock:
            fake.requests.append((method, self.path))
        if self.headers.get("Authorization") != f"Bearer {fake.token}":
            self._error(401, "Unauthorized", "Invalid or missing API token")
            return
        with fake.lock:
            if fake._throttle:
                fake._throttle -= 1
                self._error(429, "Too Many Requests", "Rate limit exceeded", fake.limit_headers(exhausted=True))
                return
        match = re.fullmatch(PREFIX + r"/checks(?:/(\d+))?", self.path.split("?")[0])
        if not match:
            self._error(404, "Not Found", f"no such resource {self.path}")
            return
        try:
            params = json.loads(body) if body else {}
        except ValueError:
            self._error(400, "Bad Request", "body is not JSON")
            return
        check_id = int(match.group(1)) if match.group(1) else None
        handler = {(None, "GET"): fake._list, (None, "POST"): fake._create, ("id", "GET"): fake._get,
                   ("id", "PUT"): fake._update, ("id", "DELETE"): fake._delete}.get(
            (None if check_id is None else "id", method))
        if handler is None:
            self._error(405, "Method Not Allowed", f"{method} not allowed here")
            return
        status, answer = handler(check_id, params)
        if status >= 400:
            self._error(status, "Bad Request" if status == 400 else "Not Found", answer)
        else:
            self.send_json(status, answer, fake.limit_headers())

    def do_GET(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")


class PingdomServer(LocalServer):
    """The fake Pingdom account; `checks` maps id to the stored detail of each check."""

    handler = _Handler

    def __init__(self, token: str, ssl_context: Any = None, port: int = 0):
        super().__init__(ssl_context=ssl_context, port=port)
        self.token = token
        self.checks: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self._throttle = 0
        self._ids = itertools.count(138631)

    @property
    def api_url(self) -> str:
        return self.url + PREFIX

    def throttle_next(self, times: int) -> None:
        """Answer the next `times` authorised requests with 429."""
        with self.lock:
            self._throttle += times

    def limit_headers(self, exhausted: bool = False) -> dict[str, str]:
        short = 0 if exhausted else 394
        return {"Req-Limit-Short": f"Remaining: {short} Time until reset: 3589",
                "Req-Limit-Long": "Remaining: 47942 Time until reset: 2591989"}

    def _validate(self, params: dict[str, Any], creating: bool) -> str:
        if creating:
            for key in ("name", "host", "type"):
                if not params.get(key):
                    return f"Missing required parameter: {key}"
            if params["type"] not in TYPES:
                return f"Invalid check type: {params['type']}"
        elif "type" in params:
            return "Check type can not be changed"
        if "resolution" in params and params["resolution"] not in RESOLUTIONS:
            return f"Invalid resolution: {params['resolution']}"
        return ""

    def _apply(self, check: dict[str, Any], params: dict[str, Any]) -> None:
        for key, target in (("name", "name"), ("host", "hostname"), ("resolution", "resolution")):
            if key in params:
                check[target] = params[key]
        if "integrationids" in params:
            check["integrationids"] = _ids(params["integrationids"])
        http = check["type"].setdefault(check["_type"], {})
        for key in ("url", "encryption", "shouldcontain"):
            if key in params:
                http[key] = params[key]

    def _list(self, _id: None, _params: dict[str, Any]) -> tuple[int, Any]:
        with self.lock:
            summaries = [{"id": i, "name": c["name"], "hostname": c["hostname"], "resolution": c["resolution"],
                          "type": c["_type"], "status": "up"} for i, c in self.checks.items()]
        return 200, {"checks": summaries, "counts": {"total": len(summaries)}}

    def _create(self, _id: None, params: dict[str, Any]) -> tuple[int, Any]:
        problem = self._validate(params, creating=True)
        if problem:
            return 400, problem
        with self.lock:
            check_id = next(self._ids)
            check = {"id": check_id, "_type": params["type"], "type": {}, "resolution": 5, "integrationids": []}
            self._apply(check, params)
            self.checks[check_id] = check
        return 200, {"check": {"id": check_id, "name": params["name"]}}

    def _get(self, check_id: int, _params: dict[str, Any]) -> tuple[int, Any]:
        with self.lock:
            check = self.checks.get(check_id)
            if check is None:
                return 404, f"Check {check_id} not found"
            return 200, {"check": {k: v for k, v in check.items() if not k.startswith("_")}}

    def _update(self, check_id: int, params: dict[str, Any]) -> tuple[int, Any]:
        problem = self._validate(params, creating=False)
        if problem:
            return 400, problem
        with self.lock:
            if check_id not in self.checks:
                return 404, f"Check {check_id} not found"
            self._apply(self.checks[check_id], params)
        return 200, {"message": "Modification of check was successful!"}

    def _delete(self, check_id: int, _params: dict[str, Any]) -> tuple[int, Any]:
        with self.lock:
            if self.checks.pop(check_id, None) is None:
                return 404, f"Check {check_id} not found"
        return 200, {"message": "Deletion of check was successful!"}
