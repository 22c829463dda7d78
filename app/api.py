"""The JSON API (documented in app/static/openapi.yaml, served at /api/openapi.yaml).

Ids are 64-bit and travel as decimal strings (JavaScript numbers lose precision above 2^53).
Authentication is the session cookie (SameSite=Lax, so cross-site form posts do not carry it).
Writes carry JSON (the photo upload: multipart) and a same-origin `Origin` if any (app/security.py).
"""

from __future__ import annotations

import json
from functools import wraps
from pathlib import Path

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from app import feed, photos, posting, social, users
from app.auth import current_user, log_in, log_out, login_wait, signup_wait
from app.config import app_config
from app.errors import BadUpload, InvalidInput, NotFound
from app.storage import storage

OPENAPI = Path(__file__).parent / "static" / "openapi.yaml"
MAX_PAGE = 100


def error(status: int, message: str, retry_after_s: int | None = None) -> JsonResponse:
    """The one error shape: {"error": "..."} (with Retry-After when the client should retry)."""
    response = JsonResponse({"error": message}, status=status)
    if retry_after_s is not None:
        response["Retry-After"] = str(retry_after_s)
    return response


def api_view(view):
    """Map the domain's errors to 4xx answers."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except BadUpload as exc:
            return error(exc.status, str(exc))
        except InvalidInput as exc:
            return error(400, str(exc))
        except NotFound as exc:
            return error(404, str(exc))

    return wrapper


def login_required(view):
    """401 unless logged in; passes the user as `me`."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        me = current_user(request)
        if me is None:
            return error(401, "log in first")
        return view(request, *args, me=me, **kwargs)

    return wrapper


def json_body(request: HttpRequest) -> dict:
    """The request's JSON object (app/security.py lets no other body through; none is `{}`)."""
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def too_many(wait_s: int) -> JsonResponse:
    """429 for a throttled log-in or sign-up."""
    return error(429, f"too many attempts; try again in {wait_s} s", retry_after_s=wait_s)


def page(request: HttpRequest, default: int = 30) -> tuple[int, int]:
    """(offset, limit) from the query string."""
    try:
        offset = max(0, int(request.GET.get("offset", 0)))
        limit = min(MAX_PAGE, max(1, int(request.GET.get("limit", default))))
    except ValueError:
        raise InvalidInput("offset and limit must be integers") from None
    return offset, limit


def photo_json(record: dict) -> dict:
    """A photo record as the API shows it."""
    store = storage()
    return {
        "id": str(record["id"]),
        "user_id": str(record["user_id"]),
        "username": record["username"],
        "caption": record["caption"],
        "width": record["width"],
        "height": record["height"],
        "like_count": record["like_count"],
        "comment_count": record["comment_count"],
        "created_at": record["created_at"],
        "image_url": store.url(record["image_key"]),
        "thumbnail_url": store.url(record["thumb_key"]) if record["thumb_key"] else None,
    }


def user_json(user: users.User) -> dict:
    return {"id": str(user.id), "username": user.username}


def comment_json(comment: dict) -> dict:
    return {**comment, "id": str(comment["id"]), "photo_id": str(comment["photo_id"]), "user_id": str(comment["user_id"])}


@require_GET
def openapi(request: HttpRequest) -> HttpResponse:
    return HttpResponse(OPENAPI.read_bytes(), content_type="application/yaml")


@require_POST
@api_view
def signup(request: HttpRequest) -> HttpResponse:
    body = json_body(request)
    wait = signup_wait(request)
    if wait is not None:
        return too_many(wait)
    try:
        user = users.create_user(str(body.get("username", "")), str(body.get("password", "")))
    except users.UsernameTaken:
        return error(409, "that username is taken")
    log_in(request, user)
    return JsonResponse(user_json(user), status=201)


@require_POST
@api_view
def login(request: HttpRequest) -> HttpResponse:
    body = json_body(request)
    wait = login_wait(request, str(body.get("username", "")))
    if wait is not None:
        return too_many(wait)
    user = users.authenticate(str(body.get("username", "")), str(body.get("password", "")))
    if user is None:
        return error(401, "wrong username or password")
    log_in(request, user)
    return JsonResponse(user_json(user))


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    log_out(request)
    return HttpResponse(status=204)


@require_GET
@login_required
def me(request: HttpRequest, me: users.User) -> HttpResponse:
    return JsonResponse(user_json(me))


@require_GET
@api_view
def user_page(request: HttpRequest, username: str) -> HttpResponse:
    user = users.user_by_username(username)
    if user is None:
        return error(404, f"no user {username!r}")
    followers, following = social.follow_counts(user.id)
    me = current_user(request)
    return JsonResponse({
        **user_json(user),
        "followers": followers,
        "following": following,
        "followed_by_me": bool(me and me.id != user.id and social.is_following(me.id, user.id)),
        "photos": [photo_json(p) for p in photos.user_photos(user.id, page(request)[1])],
    })


@require_http_methods(["POST", "DELETE"])
@api_view
@login_required
def follow(request: HttpRequest, username: str, me: users.User) -> HttpResponse:
    target = users.user_by_username(username)
    if target is None:
        return error(404, f"no user {username!r}")
    if request.method == "POST":
        social.follow(me.id, target.id)
    else:
        social.unfollow(me.id, target.id)
    return JsonResponse({"following": request.method == "POST", "user": user_json(target)})


def too_large(request: HttpRequest) -> bool:
    """Whether the declared body is over the limit (checked before Django reads any of it)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    return declared > app_config().max_upload_bytes + 64 * 1024  # room for the multipart envelope


@require_POST
@api_view
@login_required
def post_photo(request: HttpRequest, me: users.User) -> HttpResponse:
    if too_large(request):
        return error(413, f"the upload is larger than {app_config().max_upload_bytes} bytes")
    upload = request.FILES.get("image")
    if upload is None:
        return error(400, "send the photo as multipart field 'image'")
    try:
        record = posting.post_photo(me.id, upload.read(), request.POST.get("caption", ""), app_config().max_upload_bytes)
    except posting.QueueUnavailable as exc:
        return error(503, str(exc), retry_after_s=5)
    return JsonResponse(photo_json(record), status=201)


@require_GET
@api_view
def photo(request: HttpRequest, photo_id: int) -> HttpResponse:
    record = photos.photo_record(photo_id)
    if record is None:
        return error(404, f"no photo {photo_id}")
    return JsonResponse(photo_json(record))


@require_http_methods(["POST", "DELETE"])
@api_view
@login_required
def like(request: HttpRequest, photo_id: int, me: users.User) -> HttpResponse:
    count = photos.like(photo_id, me.id) if request.method == "POST" else photos.unlike(photo_id, me.id)
    if count is None:
        return error(404, f"no photo {photo_id}")
    return JsonResponse({"photo_id": str(photo_id), "liked": request.method == "POST", "like_count": count})


@require_http_methods(["GET", "POST"])
@api_view
def comments(request: HttpRequest, photo_id: int) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse({"comments": [comment_json(c) for c in photos.comments(photo_id, page(request, 50)[1])]})
    me = current_user(request)
    if me is None:
        return error(401, "log in first")
    text = str(json_body(request).get("body", "")).strip()
    if not text:
        raise InvalidInput("a comment needs a non-empty 'body'")
    comment = photos.add_comment(photo_id, me.id, me.username, text)
    if comment is None:
        return error(404, f"no photo {photo_id}")
    return JsonResponse(comment_json(comment), status=201)


@require_GET
@api_view
@login_required
def home_feed(request: HttpRequest, me: users.User) -> HttpResponse:
    offset, limit = page(request)
    return JsonResponse({"photos": [photo_json(p) for p in feed.read_feed(me.id, offset, limit)], "offset": offset})
