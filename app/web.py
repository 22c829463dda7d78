"""The small server-rendered UI: feed with thumbnails and upload form, user pages, log-in.

Form posts are CSRF-protected per view (Django's token); every unsafe request must also be
same-origin (app/security.py). Log-ins and sign-ups are throttled like the API's (app/auth.py)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from app import feed, photos, posting, social, users
from app.api import photo_json, too_large
from app.auth import current_user, log_in, log_out, login_wait, signup_wait
from app.config import app_config
from app.errors import BadUpload, InvalidInput, NotFound


@csrf_protect
@require_http_methods(["GET"])
def home(request: HttpRequest) -> HttpResponse:
    me = current_user(request)
    if me is None:
        return HttpResponseRedirect("/login/")
    items = [photo_json(p) for p in feed.read_feed(me.id, 0, 30)]
    return render(request, "home.html", {"me": me, "photos": items, "error": request.GET.get("error", "")})


@csrf_protect
@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    error = ""
    if request.method == "POST":
        wait = login_wait(request, request.POST.get("username", ""))
        if wait is not None:
            return too_many(request, "login", wait)
        user = users.authenticate(request.POST.get("username", ""), request.POST.get("password", ""))
        if user is not None:
            log_in(request, user)
            return HttpResponseRedirect("/")
        error = "Wrong username or password."
    return render(request, "login.html", {"error": error, "mode": "login"}, status=401 if error else 200)


def too_many(request: HttpRequest, mode: str, wait_s: int) -> HttpResponse:
    """The log-in or sign-up page again, 429 with Retry-After."""
    response = render(request, "login.html", {"error": f"Too many attempts. Try again in {wait_s} seconds.",
                                              "mode": mode}, status=429)
    response["Retry-After"] = str(wait_s)
    return response


@csrf_protect
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    error = ""
    if request.method == "POST":
        wait = signup_wait(request)
        if wait is not None:
            return too_many(request, "signup", wait)
        try:
            user = users.create_user(request.POST.get("username", ""), request.POST.get("password", ""))
        except InvalidInput as exc:
            error = str(exc)
        except users.UsernameTaken:
            error = "That username is taken."
        else:
            log_in(request, user)
            return HttpResponseRedirect("/")
    return render(request, "login.html", {"error": error, "mode": "signup"}, status=400 if error else 200)


@csrf_protect
@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    log_out(request)
    return HttpResponseRedirect("/login/")


@csrf_protect
@require_POST
def upload(request: HttpRequest) -> HttpResponse:
    me = current_user(request)
    if me is None:
        return HttpResponseRedirect("/login/")
    try:
        if too_large(request):
            raise BadUpload("the photo is too large", status=413)
        upload_file = request.FILES.get("image")
        if upload_file is None:
            raise BadUpload("choose a photo first")
        posting.post_photo(me.id, upload_file.read(), request.POST.get("caption", ""), app_config().max_upload_bytes)
    except BadUpload as exc:
        return render(request, "home.html", {"me": me, "photos": [], "error": str(exc)}, status=exc.status)
    except posting.QueueUnavailable:
        return render(request, "home.html", {"me": me, "photos": [], "error": "Posting is briefly unavailable; "
                                             "your photo was not kept. Please try again in a moment."}, status=503)
    return HttpResponseRedirect(f"/u/{me.username}/")


@csrf_protect
@require_http_methods(["GET"])
def user_page(request: HttpRequest, username: str) -> HttpResponse:
    user = users.user_by_username(username)
    if user is None:
        return render(request, "404.html", {"what": f"user {username}"}, status=404)
    me = current_user(request)
    followers, following = social.follow_counts(user.id)
    return render(request, "user.html", {
        "me": me,
        "user": user,
        "followers": followers,
        "following": following,
        "followed_by_me": bool(me and me.id != user.id and social.is_following(me.id, user.id)),
        "photos": [photo_json(p) for p in photos.user_photos(user.id)],
    })


@csrf_protect
@require_POST
def follow(request: HttpRequest, username: str) -> HttpResponse:
    me = current_user(request)
    if me is None:
        return HttpResponseRedirect("/login/")
    user = users.user_by_username(username)
    if user is None:
        return render(request, "404.html", {"what": f"user {username}"}, status=404)
    try:
        if request.POST.get("action") == "unfollow":
            social.unfollow(me.id, user.id)
        else:
            social.follow(me.id, user.id)
    except (InvalidInput, NotFound):
        pass  # following yourself: nothing to do, show the page again
    return HttpResponseRedirect(f"/u/{user.username}/")


@csrf_protect
@require_POST
def like(request: HttpRequest, photo_id: int) -> HttpResponse:
    me = current_user(request)
    if me is None:
        return HttpResponseRedirect("/login/")
    try:
        if request.POST.get("action") == "unlike":
            photos.unlike(photo_id, me.id)
        else:
            photos.like(photo_id, me.id)
    except NotFound:
        return render(request, "404.html", {"what": f"photo {photo_id}"}, status=404)
    target = request.POST.get("next", "/")
    return HttpResponseRedirect(target if url_has_allowed_host_and_scheme(target, allowed_hosts=None) else "/")
