"""Redis logins (ACL users, Redis ≥ 6) and their passwords.

- `default`: the app (redisPassword) — every data command, nothing `@dangerous` (no CONFIG,
  FLUSHALL, DEBUG, MODULE, KEYS, replication commands);
- `admin`: replication and operators (redisAdminPassword, only on Redis hosts);
- `munin`: INFO, PING and GET of the app's counters, read-only. Its password is derived from the
  app's (HMAC): whoever holds the app's password could do more with it anyway, and no new secret
  has to reach the monitoring hosts.
The config file holds SHA-256 hashes (`#…`) of these passwords, never the passwords themselves
(except `masterauth`, which a replica must send).
"""

from __future__ import annotations

import hashlib
import hmac

ADMIN_USER = "admin"
MUNIN_USER = "munin"


def munin_password(app_password: str) -> str:
    """The read-only monitoring login's password, derived from the app's."""
    return hmac.new(app_password.encode(), b"photostack-redis-munin", "sha256").hexdigest()


def password_hash(password: str) -> str:
    """A password as an ACL rule: `#` and its SHA-256 in hex."""
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def acl_rules(app_password: str, admin_password: str, munin_keys: str) -> list[str]:
    """The `user …` lines of redis.conf."""
    return [
        f"user default on {password_hash(app_password)} ~* &* +@all -@dangerous",
        f"user {ADMIN_USER} on {password_hash(admin_password)} ~* &* +@all",
        f"user {MUNIN_USER} on {password_hash(munin_password(app_password))} resetchannels %R~{munin_keys} "
        "-@all +ping +info +get",
    ]
