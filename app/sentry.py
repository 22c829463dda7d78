"""Sentry set-up for the web app and the worker: DSN from config (unset → disabled),
`release` = the deployed version, `environment` = the stack.

One small function so that it can delegate to monitoring/sentry.py's `init_sentry` once that lands.
"""

from __future__ import annotations

import sentry_sdk

from app.config import AppConfig


def init_app_sentry(config: AppConfig, integrations: list) -> bool:
    """Initialise sentry_sdk for this process; False (and nothing done) when no DSN is configured."""
    if not config.sentry_dsn:
        return False
    sentry_sdk.init(
        dsn=config.sentry_dsn,
        environment=config.stack,
        release=config.release,
        integrations=integrations,
        send_default_pii=False,
        traces_sample_rate=0.0,  # errors only: tracing would cost the lean request path
    )
    return True
