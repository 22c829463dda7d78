"""The session engine (SESSION_ENGINE): Django's cache sessions (in Redis), except that a Redis
that cannot be reached is an error, not an empty session.

Django's cache backend treats any error while loading as "no session" (for memcached's
invalid keys); with Redis down every logged-in request would then be answered 401 "log in
first", and clients would drop sessions that still exist. Raised instead, the error becomes a
503 with Retry-After (app/admission.py)."""

from __future__ import annotations

from django.contrib.sessions.backends import cache


class SessionStore(cache.SessionStore):
    """Cache-backed sessions whose load lets the cache's errors through."""

    def load(self) -> dict:
        session_data = self._cache.get(self.cache_key)
        if session_data is not None:
            return session_data
        self._session_key = None
        return {}
