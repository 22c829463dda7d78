"""A local Sentry Web API (HTTPS) for releases: `POST /api/0/organizations/{org}/releases/` and
`POST /api/0/organizations/{org}/releases/{version}/deploys/`.

Answers like Sentry's endpoints do: Bearer auth (401 `{"detail": "Invalid token"}`), 404 for an
unknown organization or release, 400 with DRF-style field errors for a bad body or an unknown
project slug; a release answers 201 when created (or when projects are added to it) and 208 when
it already exists with those projects; a deploy answers 201. `fail_next(status, times,
retry_after)` answers the next requests with an error (5xx, 429) before serving again.
"""

from __future__ import annotations

import itertools
import json
import re
import urllib.parse
from typing import Any

from tests.fakes.base import JsonHandler, LocalServer

RELEASES = re.compile(r"/api/0/organizations/([^/]+)/releases/")
DEPLOYS = re.compile(r"/api/0/organizations/([^/]+)/releases/([^/]+)/deploys/")
NOT_FOUND = {"detail": "The requested resource does not exist"}


def release_problems(body: Any) -> dict[str, list[str]]:
    """Field errors of a create-release body, as Sentry's serializer words them."""
    if not isinstance(body, dict):
        return {"non_field_errors": ["Invalid data. Expected a dictionary."]}
    version = body.get("version")
    if not isinstance(version, str) or not version.strip():
        return {"version": ["This field is required."]}
    if len(version) > 200 or "/" in version or "\n" in version or version in (".", "..", "latest"):
        return {"version": [f"Release with name {version} is not allowed"]}
    projects = body.get("projects")
    if not isinstance(projects, list) or not projects or not all(isinstance(p, str) for p in projects):
        return {"projects": ["This field is required."]}
    return {}


def deploy_problems(body: Any) -> dict[str, list[str]]:
    """Field errors of a create-deploy body."""
    if not isinstance(body, dict):
        return {"non_field_errors": ["Invalid data. Expected a dictionary."]}
    environment = body.get("environment")
    if not isinstance(environment, str) or not environment.strip():
        return {"environment": ["This field is required."]}
    if len(environment) > 64:
        return {"environment": ["Ensure this field has no more than 64 characters."]}
    return {}


class _Handler(JsonHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        fake: SentryApiServer = self.fake
        raw = self.read_body()
        path = self.path.split("?")[0]
        with fake.lock:
            fake.requests.append(("POST", path))
        if self.headers.get("Authorization") != f"Bearer {fake.token}":
            self.send_json(401, {"detail": "Invalid token"})
            return
        with fake.lock:
            failure = fake._failures.pop(0) if fake._failures else None
        if failure:
            status, retry_after = failure
            self.send_json(status, {"detail": "Internal Error" if status >= 500 else "Rate limit exceeded"},
                           {"Retry-After": retry_after} if retry_after is not None else None)
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self.send_json(400, {"detail": "JSON parse error"})
            return
        if match := DEPLOYS.fullmatch(path):
            status, answer = fake._deploy(match.group(1), urllib.parse.unquote(match.group(2)), body)
        elif match := RELEASES.fullmatch(path):
            status, answer = fake._release(match.group(1), body)
        else:
            status, answer = 404, NOT_FOUND
        self.send_json(status, answer)


class SentryApiServer(LocalServer):
    """The fake Sentry: organization `organization` with projects `projects`, token `token`.

    `releases` maps version to the set of its project slugs; `deploys` lists (version, environment).
    """

    handler = _Handler

    def __init__(self, token: str, ssl_context: Any, organization: str = "photostack",
                 projects: tuple[str, ...] = ("photostack-onebox",), port: int = 0):
        super().__init__(ssl_context=ssl_context, port=port)
        self.token = token
        self.organization = organization
        self.projects = set(projects)
        self.releases: dict[str, set[str]] = {}
        self.deploys: list[tuple[str, str]] = []
        self.requests: list[tuple[str, str]] = []
        self._failures: list[tuple[int, str | None]] = []
        self._ids = itertools.count(1)

    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next `times` authorised requests with `status` (and a Retry-After header)."""
        with self.lock:
            self._failures += [(status, retry_after)] * times

    def _release(self, organization: str, body: Any) -> tuple[int, Any]:
        if organization != self.organization:
            return 404, NOT_FOUND
        problems = release_problems(body)
        if problems:
            return 400, problems
        if not set(body["projects"]) <= self.projects:
            return 400, {"projects": ["Invalid project slugs"]}
        version = body["version"]
        with self.lock:
            known = self.releases.setdefault(version, set())
            added = set(body["projects"]) - known
            created = not known
            known |= added
            slugs = sorted(known)
        answer = {"id": next(self._ids), "version": version, "shortVersion": version,
                  "projects": [{"slug": s, "name": s} for s in slugs]}
        # Sentry's own choice: 208 Already Reported when nothing changed, so callers can tell.
        return (201 if created or added else 208), answer

    def _deploy(self, organization: str, version: str, body: Any) -> tuple[int, Any]:
        if organization != self.organization:
            return 404, NOT_FOUND
        with self.lock:
            exists = version in self.releases
        if not exists:
            return 404, NOT_FOUND
        problems = deploy_problems(body)
        if problems:
            return 400, problems
        with self.lock:
            self.deploys.append((version, body["environment"]))
        return 201, {"id": str(next(self._ids)), "environment": body["environment"], "name": body.get("name"),
                     "url": body.get("url"), "dateStarted": None, "dateFinished": "2011-10-06T00:00:00Z"}
