"""Django sessions in Redis as signed JSON: `SESSION_ENGINE = "app.sessions"`.

Django's cache session backend stores the session dict through the cache, and its Redis cache
pickles every value: whoever can write to Redis could make the app unpickle (run) their data.
Here a session is `SessionBase.encode()`'s string (SESSION_SERIALIZER, JSON, signed with the
SECRET_KEY) under `photostack:session:<key>`, so a value written by someone else is at worst an
invalid session. A Redis that cannot answer raises (a 503, app/admission.py), never logs the
user out; expiry is the Redis key's TTL.

While the key rotates (SECRET_KEY_FALLBACKS), a session signed with the other key still loads, and
is saved again signed with the current key at the end of the request: a session in use during
the rotation outlives the old key's retirement.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.core import signing

from app.clients import redis_client

PREFIX = "photostack:session:"


class SessionStore(SessionBase):
    """One Redis string per session; SET NX creates, SET XX updates (one round trip each)."""

    def load(self) -> dict:
        # A Redis that cannot answer is an error, not "no session": with Redis down every logged-in
        # request would otherwise be answered 401 and clients would drop sessions that still
        # exist. Raised, it becomes a 503 with Retry-After (app/admission.py).
        data = redis_client().get(PREFIX + self._get_or_create_session_key())
        if data is None:
            self._session_key = None
            return {}
        session = self.decode(data.decode())
        if session and settings.SECRET_KEY_FALLBACKS and not self._signed_with_current_key(data.decode()):
            self.modified = True  # re-signed with the current key when the response is sent
        return session

    def _signed_with_current_key(self, data: str) -> bool:
        try:
            signing.loads(data, salt=self.key_salt, serializer=self.serializer, fallback_keys=[])
        except signing.BadSignature:
            return False
        return True

    def exists(self, session_key: str | None) -> bool:
        return bool(session_key) and bool(redis_client().exists(PREFIX + session_key))

    def create(self) -> None:
        for _ in range(100):  # a collision of 32 random characters: practically never
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise RuntimeError("unable to create a new session key")

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        data = self.encode(self._get_session(no_load=must_create))
        stored = redis_client().set(PREFIX + self.session_key, data, ex=self.get_expiry_age(),
                                    nx=must_create, xx=not must_create)
        if not stored:
            # Created meanwhile (must_create) or deleted meanwhile, e.g. a log-out in another tab.
            raise CreateError if must_create else UpdateError

    def delete(self, session_key: str | None = None) -> None:
        session_key = session_key or self.session_key
        if session_key:
            redis_client().delete(PREFIX + session_key)

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: Redis expires the keys."""
