"""HTTP-level protections that apply to every view: same-origin writes, JSON-only API writes,
Secure cookies on TLS requests, no framing; and the client's address.

Cross-site request forgery: the session cookie is SameSite=Lax, which keeps it off cross-site
form posts but not off same-site ones (a sibling subdomain), and not off a login or sign-up,
which need no cookie (login CSRF). So every unsafe request whose `Origin` header names another
origin is refused (403): browsers send `Origin` on every cross-origin request that is not a GET
or HEAD (`null` from opaque contexts, refused too). For browsers old enough to omit it on form
posts, API writes must also be `application/json`, which no HTML form can send (the photo
upload is multipart, so it relies on `Origin`). A write with no body and no Content-Type (a
like, a follow) is allowed: a form always sends a Content-Type, and a script's cross-origin
request always carries `Origin`. The HTML forms also carry Django's CSRF token (app/web.py).

Behind TLS (the load balancer terminates it and nginx forwards its X-Forwarded-Proto),
`request.is_secure()` is true (settings.SECURE_PROXY_SSL_HEADER): the origin expected is then
`https://host`, and every cookie set on that response is marked Secure. The one-box is plain
HTTP, so cookies there cannot be Secure; that is why it is decided per request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from app.config import app_config

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
API_PREFIX = "/api/"
UPLOAD_PATH = "/api/photos"  # multipart: the one API write that is not JSON
FRAME_POLICY = "frame-ancestors 'none'"  # X-Frame-Options DENY for browsers that know CSP


def client_ip(request: HttpRequest) -> str:
    """The client's address: nginx's `X-Real-IP` when the peer is a trusted proxy (nginx sets it
    from its own peer, or from the load balancer's X-Forwarded-For when that peer is the load
    balancer), else the peer itself. A header from anyone else is ignored."""
    peer = request.META.get("REMOTE_ADDR", "")
    real = request.META.get("HTTP_X_REAL_IP", "").strip()
    if real and _is_trusted(peer):
        try:
            return str(ipaddress.ip_address(real))
        except ValueError:
            pass  # not an address: nginx did not write it
    return peer


def _is_trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in app_config().trusted_proxies)


def _has_body(request: HttpRequest) -> bool:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return True
    return length > 0 or "HTTP_TRANSFER_ENCODING" in request.META


def write_refusal(request: HttpRequest) -> HttpResponse | None:
    """Why an unsafe request is refused (403 cross-origin, 415 not JSON), or None to let it through."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.get_host()}":
        return JsonResponse({"error": "cross-origin request refused"}, status=403)
    if request.path.startswith(API_PREFIX):
        if request.path == UPLOAD_PATH:
            if request.content_type != "multipart/form-data":
                return JsonResponse({"error": "send the photo as multipart/form-data"}, status=415)
        elif request.content_type != "application/json" and (request.META.get("CONTENT_TYPE") or _has_body(request)):
            return JsonResponse({"error": "send the body as application/json"}, status=415)
    return None


def middleware(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Refuse cross-origin and non-JSON writes; no framing; Secure cookies on TLS requests."""

    def handle(request: HttpRequest) -> HttpResponse:
        response = None
        if request.method not in SAFE_METHODS:
            response = write_refusal(request)
        if response is None:
            response = get_response(request)
        response.setdefault("Content-Security-Policy", FRAME_POLICY)
        if request.is_secure():
            for morsel in response.cookies.values():
                morsel["secure"] = True
        return response

    return handle
