"""URL map: /health and /health/node, the JSON API under /api/, the HTML UI at the root."""

from django.urls import path

from app import api, health, wallboard, web

urlpatterns = [
    path("health", health.health),
    path("health/node", health.node),
    path("api/openapi.yaml", api.openapi),
    path("api/signup", api.signup),
    path("api/login", api.login),
    path("api/logout", api.logout),
    path("api/me", api.me),
    path("api/feed", api.home_feed),
    path("api/users/<str:username>", api.user_page),
    path("api/users/<str:username>/follow", api.follow),
    path("api/photos", api.post_photo),
    path("api/photos/<int:photo_id>", api.photo),
    path("api/photos/<int:photo_id>/like", api.like),
    path("api/photos/<int:photo_id>/comments", api.comments),
    path("wallboard/", wallboard.page),
    path("wallboard/data.json", wallboard.data),
    path("", web.home),
    path("login/", web.login),
    path("signup/", web.signup),
    path("logout/", web.logout),
    path("upload/", web.upload),
    path("u/<str:username>/", web.user_page),
    path("u/<str:username>/follow/", web.follow),
    path("p/<int:photo_id>/like/", web.like),
]
