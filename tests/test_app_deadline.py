"""A request that waited past its queue budget behind nginx is refused (503 + Retry-After)
without doing its work; a fresh one, an unstamped one and the load balancer's /health are served."""

from __future__ import annotations

import time

from tests.app_helpers import post_photo, signed_up


def stamp(age_s: float) -> dict[str, str]:
    """The header nginx adds (`X-Request-Start: t=$msec`), as if sent `age_s` seconds ago."""
    return {"X-Request-Start": f"t={time.time() - age_s:.3f}"}


def test_a_request_queued_past_its_budget_is_refused_without_its_work(app_stack):
    from django.test import Client

    from app.config import app_config

    budget_s = app_config().queue_budget_ms / 1000
    poster, _ = signed_up("deadline")
    pid = post_photo(poster).json()["id"]
    late = poster.post(f"/api/photos/{pid}/like", content_type="application/json", headers=stamp(budget_s + 1))
    assert late.status_code == 503 and int(late["Retry-After"]) > 0
    assert "budget" in late.json()["error"]
    assert poster.get(f"/api/photos/{pid}").json()["like_count"] == 0  # not done
    assert Client().get("/health", headers=stamp(budget_s + 1)).status_code == 200

    fresh = poster.post(f"/api/photos/{pid}/like", content_type="application/json", headers=stamp(0))
    assert fresh.status_code == 200 and fresh.json()["like_count"] == 1
    # A stamp from the future (the nginx host's clock ahead) counts as no wait; junk as no stamp.
    assert poster.get(f"/api/photos/{pid}", headers=stamp(-30)).status_code == 200
    assert poster.get(f"/api/photos/{pid}", headers={"X-Request-Start": "t=soon"}).status_code == 200
