"""Sentry's Web API for releases: create a release of the stack's project, record a deploy of it.

`ops deploy` uses it when the stack holds an auth token (secret `sentryAuthToken`):
`POST /api/0/organizations/{org}/releases/` with `{"version", "projects"}` answers 201 (created, or
projects added) or 208 (it already existed with those projects: Sentry makes creation idempotent),
then `POST /api/0/organizations/{org}/releases/{version}/deploys/` with `{"environment"}` answers
201. Bearer token, JSON over HTTPS with the stdlib (like `infra/pingdom.py`). One retry on 429
and 5xx after the answer's Retry-After (else `retry_wait_s`), unless it asks for more than
`max_wait_s`. Failures raise `SentryApiError`: one line naming Sentry, the request and the status
with Sentry's own `detail` — never the token. The base URL must be https, and the token never
follows a redirect to another origin (`infra/https.py`).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import http.client
import json
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from infra.https import https_problem, opener

# sentry.io DSNs point at ingest hosts (o<N>.ingest[.<region>].sentry.io); its Web API is [<region>.]sentry.io.
_SAAS_INGEST = re.compile(r"o\d+\.ingest\.((?:[a-z]{2}\.)?sentry\.io)")
_DETAIL_CHARS = 200


def api_url_from_dsn(dsn: str) -> str:
    """The Web API's base URL for a DSN: its scheme, host and path prefix (a self-hosted Sentry
    serves both from one place); sentry.io's ingest hosts map to `https://[<region>.]sentry.io`."""
    parts = urllib.parse.urlsplit(dsn)
    host = parts.hostname or ""
    if saas := _SAAS_INGEST.fullmatch(host):
        return f"https://{saas.group(1)}"
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    prefix = parts.path.rstrip("/").rpartition("/")[0]  # the DSN's path is <prefix>/<project id>
    return f"{parts.scheme}://{netloc}{prefix}"


class SentryApiError(Exception):
    """Sentry refused or could not be reached: `status` is the HTTP status (0 = unreachable)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class SentryReleases:
    """Releases and deploys of one organization. `ca_bundle` trusts a private CA (self-hosted, tests).
    A base URL that is not https:// is a SentryApiError before anything is sent."""

    def __init__(self, base_url: str, token: str, organization: str, timeout_s: float = 10.0,
                 retry_wait_s: float = 1.0, max_wait_s: float = 10.0, ca_bundle: str | None = None):
        if problem := https_problem(base_url):
            raise SentryApiError(f"Sentry: {problem}", 0)
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.organization = organization
        self.timeout_s = timeout_s
        self.retry_wait_s = retry_wait_s
        self.max_wait_s = max_wait_s
        self._opener = opener(ssl.create_default_context(cafile=ca_bundle) if ca_bundle else None)

    def create_release(self, version: str, projects: list[str]) -> bool:
        """Create release `version` of `projects`; True if Sentry created it (201), False if it existed (208)."""
        org = urllib.parse.quote(self.organization, safe="")
        return self._post(f"/api/0/organizations/{org}/releases/", {"version": version, "projects": projects}) == 201

    def create_deploy(self, version: str, environment: str) -> None:
        """Record that release `version` was deployed to `environment`."""
        org, quoted = (urllib.parse.quote(v, safe="") for v in (self.organization, version))
        self._post(f"/api/0/organizations/{org}/releases/{quoted}/deploys/", {"environment": environment})

    def _post(self, path: str, body: dict[str, Any]) -> int:
        url = self.base_url + path
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json",
                   "Accept": "application/json"}
        data = json.dumps(body).encode()
        for attempt in (1, 2):
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with self._opener.open(request, timeout=self.timeout_s) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                error = SentryApiError(f"Sentry POST {url}: {exc.code} {_detail(exc)}", exc.code)
                retryable = attempt == 1 and (exc.code == 429 or exc.code >= 500)
                wait = _retry_after(exc.headers.get("Retry-After"), self.retry_wait_s) if retryable else None
                if wait is None or wait > self.max_wait_s:
                    raise error from None
            except (OSError, http.client.HTTPException) as exc:  # refused, TLS, timeout, cut off
                reason = getattr(exc, "reason", exc)
                raise SentryApiError(f"Sentry POST {url}: unreachable ({reason})", 0) from None
            time.sleep(wait)
        raise AssertionError("unreachable")  # the second attempt returns or raises


def _detail(exc: urllib.error.HTTPError) -> str:
    """Sentry's `detail`, or its field errors (`projects: Invalid project slugs`), on one short line."""
    try:
        raw = exc.read()
    finally:
        exc.close()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        text = body["detail"]
    elif isinstance(body, dict) and body:
        text = "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in body.items())
    else:
        text = str(exc.reason)
    return " ".join(text.split())[:_DETAIL_CHARS]


def _retry_after(value: str | None, default_s: float) -> float:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date); `default_s` without one."""
    if not value:
        return default_s
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default_s
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())
