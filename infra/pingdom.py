"""Pingdom integration: a thin client of the Pingdom API 3.1 (no maintained one exists on PyPI).

Bearer-token JSON over HTTPS: `GET/POST /checks`, `GET/PUT/DELETE /checks/{id}`. Checks are
matched by name, so `sync_check` is idempotent: create if missing, update only what differs,
otherwise leave it alone. Errors raise `PingdomError` with the status and Pingdom's own message;
on 429 the client waits and retries a bounded number of times, then raises with the
`Req-Limit-Short` / `Req-Limit-Long` headers in the message. The base URL must be https, and
the token never follows a redirect to another origin (`infra/https.py`).
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from infra.https import https_problem, opener

DEFAULT_BASE_URL = "https://api.pingdom.com/api/3.1"
RATE_LIMIT_HEADERS = ("Req-Limit-Short", "Req-Limit-Long")


class PingdomError(Exception):
    """Pingdom refused a request: `status` (0 = unreachable), its message and rate-limit headers."""

    def __init__(self, status: int, message: str, rate_limits: dict[str, str] | None = None):
        self.status = status
        self.message = message
        self.rate_limits = rate_limits or {}
        limits = "; ".join(f"{k}: {v}" for k, v in self.rate_limits.items())
        super().__init__(f"Pingdom {status}: {message}" + (f" ({limits})" if limits and status == 429 else ""))


@dataclass(frozen=True)
class SyncResult:
    """What `sync_check` did: "created", "updated" or "unchanged", and the check id."""

    action: str
    check_id: int


class PingdomClient:
    """Checks of one Pingdom account. `ca_bundle` trusts a private CA (tests, proxies).
    A base URL that is not https:// is a PingdomError before anything is sent."""

    def __init__(self, token: str, base_url: str = DEFAULT_BASE_URL, timeout_s: float = 10.0,
                 rate_limit_retries: int = 2, rate_limit_wait_s: float = 2.0, ca_bundle: str | None = None):
        if problem := https_problem(base_url):
            raise PingdomError(0, problem)
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout_s = timeout_s
        self.rate_limit_retries = rate_limit_retries
        self.rate_limit_wait_s = rate_limit_wait_s
        self._opener = opener(ssl.create_default_context(cafile=ca_bundle) if ca_bundle else None)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(self.rate_limit_retries + 1):
            request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
            try:
                with self._opener.open(request, timeout=self.timeout_s) as response:
                    raw = response.read()
                    return json.loads(raw) if raw else {}
            except urllib.error.HTTPError as exc:
                error = _error_from(exc)
                if exc.code != 429 or attempt == self.rate_limit_retries:
                    raise error from None
            except (urllib.error.URLError, TimeoutError) as exc:
                raise PingdomError(0, f"{method} {self.base_url + path} unreachable: {exc}") from None
            time.sleep(self.rate_limit_wait_s * 2**attempt)
        raise AssertionError("unreachable")  # the loop returns or raises

    def checks(self) -> list[dict[str, Any]]:
        """Every check of the account (summary fields: id, name, hostname, status, resolution, type)."""
        return self._request("GET", "/checks").get("checks", [])

    def check(self, check_id: int) -> dict[str, Any]:
        """One check in detail (includes type.http.url/shouldcontain and integrationids)."""
        return self._request("GET", f"/checks/{check_id}")["check"]

    def create_check(self, params: dict[str, Any]) -> int:
        """Create a check; returns its id."""
        return int(self._request("POST", "/checks", params)["check"]["id"])

    def update_check(self, check_id: int, params: dict[str, Any]) -> None:
        """Modify a check (its type cannot change)."""
        self._request("PUT", f"/checks/{check_id}", {k: v for k, v in params.items() if k != "type"})

    def delete_check(self, check_id: int) -> None:
        self._request("DELETE", f"/checks/{check_id}")

    def find_check(self, name: str) -> dict[str, Any] | None:
        """The check called `name`, if any (the first one if Pingdom holds duplicates)."""
        return next((c for c in self.checks() if c.get("name") == name), None)

    def sync_check(self, name: str, host: str, path: str = "/health", shouldcontain: str = "ok",
                   resolution: int = 1, integration_ids: tuple[int, ...] = ()) -> SyncResult:
        """Make an HTTPS check called `name` of `https://host/path` look like this; idempotent."""
        wanted = http_check_params(name, host, path, shouldcontain, resolution, integration_ids)
        action, check_id = self.planned_check(name, host, path, shouldcontain, resolution, integration_ids)
        if action == "create":
            return SyncResult("created", self.create_check(wanted))
        if action == "keep":
            return SyncResult("unchanged", check_id)
        self.update_check(check_id, wanted)
        return SyncResult("updated", check_id)

    def planned_check(self, name: str, host: str, path: str = "/health", shouldcontain: str = "ok",
                      resolution: int = 1, integration_ids: tuple[int, ...] = ()) -> tuple[str, int | None]:
        """What `sync_check` would do, read only: ("create", None), ("update", id) or ("keep", id)."""
        wanted = http_check_params(name, host, path, shouldcontain, resolution, integration_ids)
        existing = self.find_check(name)
        if existing is None:
            return "create", None
        check_id = int(existing["id"])
        return ("keep" if _matches(self.check(check_id), wanted) else "update"), check_id

    def delete_check_named(self, name: str) -> bool:
        """Delete the check called `name`; False if there was none."""
        existing = self.find_check(name)
        if existing is None:
            return False
        self.delete_check(int(existing["id"]))
        return True


def check_name(domain: str) -> str:
    """The name of the check of `https://<domain>/health`, which finds it: the program's check and
    `ops pingdom sync` are one check."""
    return f"photostack {domain} /health"


def http_check_params(name: str, host: str, path: str, shouldcontain: str, resolution: int,
                      integration_ids: tuple[int, ...]) -> dict[str, Any]:
    """The Pingdom 3.1 body of an HTTPS check (integrationids as the comma list Pingdom expects)."""
    return {
        "name": name,
        "host": host,
        "type": "http",
        "encryption": True,
        "url": path,
        "shouldcontain": shouldcontain,
        "resolution": resolution,
        "integrationids": ",".join(str(i) for i in sorted(integration_ids)),
    }


def _matches(detail: dict[str, Any], wanted: dict[str, Any]) -> bool:
    http = detail.get("type", {}).get("http", {})
    have_ids = ",".join(str(i) for i in sorted(detail.get("integrationids") or []))
    return (detail.get("hostname") == wanted["host"] and detail.get("resolution") == wanted["resolution"]
            and http.get("url") == wanted["url"] and http.get("encryption") == wanted["encryption"]
            and http.get("shouldcontain") == wanted["shouldcontain"] and have_ids == wanted["integrationids"])


def _error_from(exc: urllib.error.HTTPError) -> PingdomError:
    limits = {h: exc.headers[h] for h in RATE_LIMIT_HEADERS if exc.headers and exc.headers.get(h)}
    try:
        error = json.loads(exc.read() or b"{}").get("error", {})
        message = error.get("errormessage") or error.get("statusdesc") or exc.reason
    except ValueError:
        message = str(exc.reason)
    return PingdomError(exc.code, str(message), limits)
