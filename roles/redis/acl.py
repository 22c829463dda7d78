"""Redis logins (ACL users, Redis ≥ 6) and their passwords.

- `default`: the app (redisPassword) — every data command, nothing `@dangerous` (no CONFIG,
  FLUSHALL, DEBUG, MODULE, KEYS, replication commands);
- `admin`: replication and operators (redisAdminPassword, only on Redis hosts);
- `munin`: INFO, PING and GET of the app's counters, read-only. Its password is derived from the
  app's (HMAC): whoever holds the app's password could do more with it anyway, and no new secret
  has to reach the monitoring hosts.
The ACL file holds SHA-256 hashes (`#…`) of these passwords, never the passwords themselves
(`masterauth` in the config is the exception: a replica must send it).

A user may hold several passwords: while redisPassword rotates (ops/rotation.py) `default` and
`munin` accept the old and the new one, and the ACL file is re-read with `ACL LOAD` (connected
clients stay connected; a restart would empty the primary, which keeps no data on disk).
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


def acl_rules(app_passwords: list[str], admin_password: str, munin_keys: str) -> list[str]:
    """The `user …` lines of the ACL file; `app_passwords`: every app password accepted (the
    current one first, and while it rotates the other one)."""
    app = " ".join(password_hash(p) for p in app_passwords)
    munin = " ".join(password_hash(munin_password(p)) for p in app_passwords)
    return [
        f"user default on {app} ~* &* +@all -@dangerous",
        f"user {ADMIN_USER} on {password_hash(admin_password)} ~* &* +@all",
        f"user {MUNIN_USER} on {munin} resetchannels %R~{munin_keys} -@all +ping +info +get",
    ]
