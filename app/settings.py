"""Django settings: everything from the environment (app/config.py); no ORM database, no
django.contrib.auth tables. Middleware: admission control first (app/admission.py: a refused
request costs nothing more), security headers, same-origin writes (app/security.py), sessions
(signed JSON in Redis, app/sessions.py); the request path stays lean."""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from app.config import app_config

_config = app_config()
if not _config.secret_key:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY is not set")

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = _config.secret_key
# During a key rotation (ops/rotation.py) signatures made with the other key still verify.
SECRET_KEY_FALLBACKS = [_config.secret_key_fallback] if _config.secret_key_fallback else []
DEBUG = False
ALLOWED_HOSTS = list(_config.allowed_hosts)
ROOT_URLCONF = "app.urls"
WSGI_APPLICATION = "app.wsgi.application"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = [
    "app.wallboard.middleware",  # requests, 5xx and latency per second, for the wallboard
    "app.admission.AdmissionMiddleware",  # queue deadline, failing dependencies → 503 first
    "django.middleware.security.SecurityMiddleware",  # nosniff, Referrer-Policy, HSTS over TLS
    "app.security.middleware",  # same-origin and JSON-only writes, Secure cookies over TLS
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "app.shards.MovingShardMiddleware",  # 503 + Retry-After while a write's logical shard moves
]
DATABASES: dict = {}  # shard data is raw SQL through app/shards.py

SESSION_ENGINE = "app.sessions"  # signed JSON in Redis, never pickle
SESSION_SERIALIZER = "django.contrib.sessions.serializers.JSONSerializer"
SESSION_COOKIE_NAME = "photostack_session"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 14 * 24 * 3600
CSRF_COOKIE_SAMESITE = "Lax"
# Cookies get Secure per request (app/security.py): the one-box is plain HTTP.
# nginx forwards the load balancer's X-Forwarded-Proto (and `http` when there is none); only
# nginx can reach the app port.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = 365 * 24 * 3600  # sent on HTTPS responses only
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

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
