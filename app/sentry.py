"""Sentry for the web app and the worker: DSN from config (unset → disabled), `release` = the
deployed version, `environment` = the stack, tag `component` = web or worker. The SDK set-up
itself is monitoring/integrations/sentry.py's, shared with the `ops` CLI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.config import AppConfig
from monitoring.integrations.sentry import init_sentry


def init_app_sentry(config: AppConfig, component: str, integrations: Sequence[Any]) -> bool:
    """Initialise sentry_sdk for this process; False (and nothing done) when no DSN is configured."""
    return init_sentry(
        config.sentry_dsn,
        config.stack,
        config.release,
        integrations,
        component=component,
        send_default_pii=False,
        traces_sample_rate=0.0,  # errors only: tracing would cost the lean request path
    )
