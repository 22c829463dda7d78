"""Sentry integration: error reporting for the app, the workers and the `ops` CLI.

`init_sentry` is a no-op without a DSN, so code can call it unconditionally. Every event carries
the stack's `environment` and the deployed `release`; `component` (app, worker, ops) is a tag.
Setting `release` at init is what makes Sentry attribute errors to a release.

No secrets leave the process: stack frames carry no local variables (a frame of a log-in or a
converge holds passwords), and `scrub` replaces the value under any key that looks like a
secret (password, secret, token, authorization, cookie, …), at any depth of the event:
request headers, cookies and body, extra data, contexts, breadcrumbs.

Deploys (`mark_deploy_for_stack`, called by `ops deploy` and `ops rollback`): with the optional
secret `sentryAuthToken` (an organization auth token) and `alerting.sentry` on, a real Sentry
release of the project `photostack-<environment>` and a deploy of it to the environment, through
the Web API (`monitoring/integrations/sentry_releases.py`; base URL `alerting.sentryUrl`, else from the DSN).
Without the token — the DSN alone cannot create releases — `mark_deploy` records the deploy as
an info event carrying that release and environment (tag `deploy`), which shows in the release's
event stream but is no Sentry "Deploy". An API failure is a warning line for the operator (the
deploy itself happened) and the deploy is recorded as that event instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

try:
    import sentry_sdk
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("monitoring.integrations.sentry needs the 'sentry-sdk' package: pip install sentry-sdk==2.75.0") from exc

from infra.config import StackConfig
from infra.secrets import SecretStore
from infra.alerts import project_slug
from monitoring.integrations.sentry_releases import SentryApiError, SentryReleases, api_url_from_dsn

DSN_ENV = "PHOTOSTACK_SENTRY_DSN"
RELEASE_ENV = "PHOTOSTACK_RELEASE"
DSN_SECRET = "sentryDsn"
AUTH_TOKEN_SECRET = "sentryAuthToken"
# PEM CA bundle to trust for the Web API (a self-hosted Sentry behind a private CA; tests).
CA_ENV = "PHOTOSTACK_SENTRY_CA"

SecretLookup = Callable[[str], str | None]

# A key containing any of these (in any case) holds a secret; `scrub` replaces its value.
SECRET_KEY_PARTS = ("password", "passwd", "secret", "token", "authorization", "cookie", "session", "csrf",
                    "api_key", "apikey", "credential", "private_key", "dsn")
FILTERED = "[Filtered]"


def scrub(value: Any) -> Any:
    """`value` with every value under a secret-looking key replaced by FILTERED, at any depth of
    dicts and lists (a copy; the SDK's `before_send` hook takes the returned event)."""
    if isinstance(value, dict):
        return {key: FILTERED if isinstance(key, str) and any(p in key.lower() for p in SECRET_KEY_PARTS)
                else scrub(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(item) for item in value]
    return value


def _before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    return scrub(event)


def init_sentry(dsn: str | None, environment: str, release: str | None, integrations: Sequence[Any] = (),
                component: str | None = None, **options: Any) -> bool:
    """Start the Sentry SDK for this process; returns False (and does nothing) without a DSN."""
    if not dsn:
        return False
    sentry_sdk.init(dsn=dsn, environment=environment, release=release, integrations=list(integrations),
                    include_local_variables=False, before_send=_before_send, **options)
    if component:
        sentry_sdk.set_tag("component", component)
    return True


def dsn_for_stack(stack: str, config: StackConfig) -> str | None:
    """The stack's DSN: `$PHOTOSTACK_SENTRY_DSN` if set, else the `sentryDsn` secret when alerting.sentry is on."""
    return _stack_dsn(config, lambda name: SecretStore.for_stack(stack).get(name))


def _stack_dsn(config: StackConfig, secret: SecretLookup) -> str | None:
    if os.environ.get(DSN_ENV):
        return os.environ[DSN_ENV]
    if not config.alerting.sentry:
        return None
    return secret(DSN_SECRET)


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


def mark_deploy_for_stack(config: StackConfig, release: str, secret: SecretLookup,
                          retry_wait_s: float = 1.0) -> str | None:
    """Tell Sentry that `release` is deployed to the stack's environment; returns a warning line, or None.

    `secret(name)` looks up an optional secret (None when unset). With `sentryAuthToken`: a release
    and a deploy through the Web API; without it, or when the API fails, the event of `mark_deploy`.
    """
    token = secret(AUTH_TOKEN_SECRET) if config.alerting.sentry else None
    if not token:
        mark_deploy(release, config.environment)
        return None
    try:
        _release_and_deploy(config, release, token, _stack_dsn(config, secret), retry_wait_s)
    except SentryApiError as exc:
        # Still leave a trace of the deploy in Sentry, if the SDK is on.
        fallback = mark_deploy(release, config.environment)
        return f"{exc}; recorded the deploy as an event instead" if fallback else str(exc)
    return None


def _release_and_deploy(config: StackConfig, release: str, token: str, dsn: str | None, retry_wait_s: float) -> None:
    base_url = config.alerting.sentry_url or (api_url_from_dsn(dsn) if dsn else None)
    if not base_url:
        raise SentryApiError("Sentry: no Web API URL for the release: set photostack:alerting.sentryUrl", 0)
    api = SentryReleases(base_url, token, config.alerting.sentry_organization, retry_wait_s=retry_wait_s,
                         ca_bundle=os.environ.get(CA_ENV) or None)
    api.create_release(release, [project_slug(config.environment)])
    api.create_deploy(release, config.environment)
