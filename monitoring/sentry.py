"""Sentry integration: error reporting for the app, the workers and the `ops` CLI.

`init_sentry` is a no-op without a DSN, so code can call it unconditionally. Every event carries
the stack's `environment` and the deployed `release`; `component` (app, worker, ops) is a tag.

Deploys: Sentry's Releases API (create release, then `POST .../releases/<v>/deploys/`) needs an
org auth token, which photostack does not hold — only the DSN (secret `sentryDsn`). So
`mark_deploy` records the deploy as an info event carrying that release and environment
(tag `deploy`), which shows up in the release's event stream; it does not create a Sentry
"Deploy" object. Setting `release` at init is what makes Sentry attribute errors to a release.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

try:
    import sentry_sdk
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("monitoring.sentry needs the 'sentry-sdk' package: pip install sentry-sdk==2.75.0") from exc

from infra.config import StackConfig
from infra.secrets import SecretStore

DSN_ENV = "PHOTOSTACK_SENTRY_DSN"
RELEASE_ENV = "PHOTOSTACK_RELEASE"
DSN_SECRET = "sentryDsn"


def init_sentry(dsn: str | None, environment: str, release: str | None, integrations: Sequence[Any] = (),
                component: str | None = None, **options: Any) -> bool:
    """Start the Sentry SDK for this process; returns False (and does nothing) without a DSN."""
    if not dsn:
        return False
    sentry_sdk.init(dsn=dsn, environment=environment, release=release, integrations=list(integrations),
                    **options)
    if component:
        sentry_sdk.set_tag("component", component)
    return True


def dsn_for_stack(stack: str, config: StackConfig) -> str | None:
    """The stack's DSN: `$PHOTOSTACK_SENTRY_DSN` if set, else the `sentryDsn` secret when alerting.sentry is on."""
    if os.environ.get(DSN_ENV):
        return os.environ[DSN_ENV]
    if not config.alerting.sentry:
        return None
    return SecretStore.for_stack(stack).get(DSN_SECRET)


def init_for_stack(stack: str, config: StackConfig, component: str, integrations: Sequence[Any] = (),
                   release: str | None = None) -> bool:
    """`init_sentry` with the stack's DSN and environment; release from the argument or `$PHOTOSTACK_RELEASE`."""
    return init_sentry(dsn_for_stack(stack, config), config.environment, release or os.environ.get(RELEASE_ENV),
                       integrations, component)


def mark_deploy(release: str, environment: str, timeout_s: float = 5.0) -> str | None:
    """Record that `release` was deployed to `environment` as an info event; returns its id (None if Sentry is off)."""
    if not sentry_sdk.get_client().is_active():
        return None
    event_id = sentry_sdk.capture_event({
        "message": f"Deployed {release} to {environment}",
        "level": "info",
        "release": release,
        "environment": environment,
        "tags": {"deploy": release},
    })
    sentry_sdk.flush(timeout=timeout_s)
    return event_id
