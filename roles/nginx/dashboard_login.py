"""The dashboards' password login (`monitoring.dashboardPassword`): nginx asks for it before
/munin/ and /wallboard/, wherever they are served (the nginx tier, the monitoring host).

The password file holds a salted SHA-1 (`{SSHA}`, one of the schemes nginx's auth_basic reads;
the crypt() ones need Python's `crypt`, gone in 3.13) of the dashboardPassword secret, never the
password. A salt need not be secret, only unique: it is a hash of the stack, its domain and the
user, so no table computed for another deployment fits, and the file is the same at every render
(a converge changes it only when the password does). Choose a long random password: a fast hash
does not protect a guessable one from whoever reads the file (root and nginx only).
"""

from __future__ import annotations

import base64
import hashlib

from roles.context import RoleContext
from roles.engine.resources import Absent, File

PASSWORD_FILE = "/etc/nginx/photostack-dashboard.htpasswd"
REALM = "photostack dashboards"
NGINX_WORKERS = "www-data"  # nginx's workers read the file at each request


def password_line(user: str, password: str, salt_of: str) -> str:
    """One line of an nginx auth_basic user file: `user:{SSHA}base64(sha1(password + salt) + salt)`,
    the salt derived from `salt_of` and the user."""
    salt = hashlib.sha256(f"photostack-dashboard:{salt_of}:{user}".encode()).digest()[:16]
    digest = hashlib.sha1(password.encode() + salt).digest()
    return f"{user}:{{SSHA}}{base64.b64encode(digest + salt).decode()}\n"


def realm(ctx: RoleContext) -> str | None:
    """The realm nginx names when it asks for the login; None when the stack has no password login."""
    return REALM if ctx.config.monitoring.dashboard_password is not None else None


def password_file(ctx: RoleContext, notify: tuple[str, ...]) -> File | Absent:
    """The user file nginx checks the login against (none without a password login)."""
    login = ctx.config.monitoring.dashboard_password
    if login is None:
        return Absent(PASSWORD_FILE, notify=notify)
    line = password_line(login.user, ctx.secret("dashboardPassword"), f"{ctx.stack}:{ctx.config.domain}")
    return File(PASSWORD_FILE, line, group=NGINX_WORKERS, mode=0o640, notify=notify, sensitive=True)
