"""What the bearer-token clients (Pingdom, Sentry's Web API) share: HTTPS only, and a token that
never follows a redirect to another origin.

urllib follows redirects of GET requests and copies every header, `Authorization` included, to
whatever host the `Location` names, over http:// too. `opener()` follows a redirect only within
the same scheme, host and port; any other is an HTTPError naming where it pointed, so the
client reports it as one failed request and the token stays home.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


def https_problem(url: str) -> str | None:
    """Why `url` cannot be an API base URL (not https://, no host), or None when it can."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return f"the API base URL must be https://host/..., got {url!r} (the token would travel in clear)"
    return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the request's own origin (with its headers, the token too)."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        target = urllib.parse.urljoin(req.full_url, newurl)
        if _origin(target) != _origin(req.full_url):
            raise urllib.error.HTTPError(req.full_url, code, f"redirected to another origin ({target}), "
                                         "not followed with the token", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def opener(context: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    """An opener for one client: TLS with `context` (None: the system's CAs), same-origin redirects."""
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _SameOriginRedirects())
