"""Postgres logins and their SCRAM-SHA-256 verifiers.

The same verifier goes into Postgres (`ALTER ROLE … PASSWORD 'SCRAM-SHA-256$…'`) and into
pgbouncer's userlist, so no plain password is stored on any host, and pgbouncer can log in to
Postgres with the client's SCRAM keys (that needs identical verifiers on both sides). The salt is
an HMAC of the user under the stack's own random `scramSaltKey` secret: unique per stack and user
(no table computed for one deployment's "photostack" login fits another's), yet stable, so both
roles render the same verifier and a converge finds nothing to do until the password changes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

APP_USER = "photostack"  # owns the databases; the app's logins act as it (dbPassword: see app_login)
REPLICATION_USER = "replicator"  # streaming replicas (replicationPassword)
ADMIN_USER = "pgbouncer_admin"  # pgbouncer admin console: PAUSE, RELOAD … (pgbouncerAdminPassword)
STATS_USER = "pgbouncer_stats"  # pgbouncer's SHOW commands only, for monitoring (see stats_password)

# user -> the secret holding its password
USER_SECRETS = {
    APP_USER: "dbPassword",
    REPLICATION_USER: "replicationPassword",
    ADMIN_USER: "pgbouncerAdminPassword",
}

def app_login(password: str, salt_key: str) -> str:
    """The app's login for one dbPassword: `photostack_<8 hex digits>`, an HMAC of the password
    under the stack's scramSaltKey (so the name tells nothing of the password).

    Postgres keeps one password per role, so a rotation (ops/rotation.py) cannot have the old and
    the new password on one login: each password gets a login of its own, a member of APP_USER
    that acts as it from its first statement (`ALTER ROLE … SET role`), so objects and privileges
    stay APP_USER's whichever login made them. During the overlap both logins exist (in Postgres
    and in pgbouncer's userlist); the app rolls to the new one; the old login is dropped.
    Chosen over two fixed logins used in turn, which would need a record of which is current:
    the name follows from the secret alone. APP_USER itself keeps a login with the current
    password, for operators' tools."""
    digest = hmac.new(salt_key.encode(), f"photostack-db-login:{password}".encode(), "sha256").hexdigest()
    return f"{APP_USER}_{digest[:8]}"


def stats_password(admin_password: str) -> str:
    """The monitoring login's password, derived from the admin's (HMAC): it lives on the same
    pgbouncer hosts, and the munin plugin config then holds a login that can only read stats."""
    return hmac.new(admin_password.encode(), b"photostack-pgbouncer-stats", "sha256").hexdigest()


SCRAM_ITERATIONS = 4096  # Postgres' default scram_iterations


def scram_verifier(user: str, password: str, salt_key: str, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier Postgres stores for `password` (RFC 5802/7677 format), salted
    per stack (`salt_key`: the scramSaltKey secret)."""
    salt = hmac.new(salt_key.encode(), f"photostack-scram-salt:{user}".encode(), "sha256").digest()[:16]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
