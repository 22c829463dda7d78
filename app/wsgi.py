"""WSGI entry point: `gunicorn app.wsgi:application`.

Sentry starts here (before Django loads), so import-time errors of the app are reported too."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402
from sentry_sdk.integrations.django import DjangoIntegration  # noqa: E402

from app.config import app_config  # noqa: E402
from app.sentry import init_app_sentry  # noqa: E402

init_app_sentry(app_config(), "web", [DjangoIntegration()])
application = get_wsgi_application()
