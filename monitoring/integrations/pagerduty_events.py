"""PagerDuty integration: deliver Events API v2 bodies with the `pagerduty` client.

`EventsApiV2Client` (package `pagerduty`, the maintained successor of pdpyras) does the HTTP:
it adds the routing key to the body and retries 429 and 5xx answers with exponential backoff.
We only bound its retries, make its delays configurable (tests use milliseconds) and turn its
errors into `DeliveryError(retryable=...)` so the pipeline knows whether to keep the event spooled.

Endpoint and trust, for one-box drills and tests (the client insists on https):
- `PHOTOSTACK_PAGERDUTY_URL`: base URL of the Events API (default https://events.pagerduty.com).
- `PHOTOSTACK_PAGERDUTY_CA`: PEM CA bundle to trust for that URL (e.g. a local test CA).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any

try:
    import pagerduty
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "monitoring.integrations.pagerduty_events needs the 'pagerduty' package: pip install pagerduty==7.2.0"
    ) from exc

URL_ENV = "PHOTOSTACK_PAGERDUTY_URL"
CA_ENV = "PHOTOSTACK_PAGERDUTY_CA"
RETRY_STATUSES = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: `attempts` tries per event; waits double from `first_delay_s`."""

    attempts: int = 4
    first_delay_s: float = 0.5
    timeout_s: float = 10.0


class DeliveryError(Exception):
    """PagerDuty did not accept an event. `retryable`: worth sending again later."""

    def __init__(self, message: str, retryable: bool, status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class PagerDutySender:
    """Sends Events v2 bodies to one routing key through `pagerduty.EventsApiV2Client`."""

    def __init__(self, routing_key: str, base_url: str | None = None, ca_bundle: str | None = None,
                 retry: RetryPolicy = RetryPolicy()):
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        client = pagerduty.EventsApiV2Client(routing_key, base_url=base_url, verify=verify)
        client.timeout = retry.timeout_s
        # The client sleeps sleep_timer * sleep_timer_base**n before retry n (n from 1).
        client.sleep_timer_base = 2
        client.sleep_timer = retry.first_delay_s / client.sleep_timer_base
        for status in RETRY_STATUSES:
            client.retry[status] = retry.attempts - 1
        client.max_http_attempts = retry.attempts
        client.max_network_attempts = retry.attempts - 1
        self.client = client

    @classmethod
    def from_env(cls, routing_key: str, retry: RetryPolicy = RetryPolicy()) -> PagerDutySender:
        """A sender honouring PHOTOSTACK_PAGERDUTY_URL and PHOTOSTACK_PAGERDUTY_CA."""
        return cls(routing_key, base_url=os.environ.get(URL_ENV) or None,
                   ca_bundle=os.environ.get(CA_ENV) or None, retry=retry)

    def send(self, event: dict[str, Any]) -> str:
        """Send one Events v2 body (no routing_key in it); returns PagerDuty's dedup_key."""
        properties = {k: v for k, v in event.items() if k not in ("event_action", "dedup_key", "routing_key")}
        try:
            return self.client.send_event(event["event_action"], dedup_key=event.get("dedup_key"), **properties)
        except pagerduty.HttpError as exc:
            status = exc.response.status_code
            # 400 is an invalid event: resending it cannot succeed. Anything else (throttling after
            # our retries, 5xx, a wrong key being fixed) may succeed later, so keep it.
            raise DeliveryError(f"PagerDuty answered {status}: {exc}", retryable=status != 400,
                                status=status) from None
        except pagerduty.Error as exc:
            raise DeliveryError(f"PagerDuty unreachable: {exc}", retryable=True) from None
