"""Django settings: everything from the environment (app/config.py); no ORM database, no
django.contrib.auth tables. Middleware is the admission control (app/admission.py: first, so
a refused request costs nothing more) and the session middleware (sessions in Redis via
Django's RedisCache): the request path stays lean."""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from app.clients import REDIS_OPTIONS
from app.config import app_config

_config = app_config()
if not _config.secret_key:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY is not set")

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = _config.secret_key
DEBUG = False
ALLOWED_HOSTS = list(_config.allowed_hosts)
ROOT_URLCONF = "app.urls"
WSGI_APPLICATION = "app.wsgi.application"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["app.admission.AdmissionMiddleware", "django.contrib.sessions.middleware.SessionMiddleware"]
DATABASES: dict = {}  # shard data is raw SQL through app/shards.py

CACHES = {
    "default": {
        "BACKEND": "app.cache.SharedClientRedisCache",
        "LOCATION": _config.redis_url,
        "KEY_PREFIX": "photostack",
        "OPTIONS": REDIS_OPTIONS,
    }
}
SESSION_ENGINE = "app.sessions"
SESSION_COOKIE_NAME = "photostack_session"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 14 * 24 * 3600
CSRF_COOKIE_SAMESITE = "Lax"
# nginx terminates TLS on AWS and says so in X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Uploads stay in memory up to the accepted size (no temp files to leave behind).
FILE_UPLOAD_MAX_MEMORY_SIZE = _config.max_upload_bytes
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False
DEFAULT_CHARSET = "utf-8"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"not_refused": {"()": "app.admission.NotRefused"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"filters": ["not_refused"]}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
