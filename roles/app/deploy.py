"""Shell text of a rolling deploy's host steps (pure builders; ops/rollout.py runs them).

A deploy reuses the release steps of roles/app/release.py (venv → ship → switch) and adds:
    ship_if_missing(release)          venv + unpack, each skipped when already done
    shipped_version(version)          exit 0 when that release is complete on the host
    current_version()                 print the version `current` points at
    runs_release(pidfile, version)    exit 0 when the process of `pidfile` runs from that release
    listens(pidfile, port)            exit 0 when that process holds the port's listening socket
    healthy(address, port)            exit 0 when the instance answers /health with 200
    wait_until(check, seconds)        poll a check, bounded
"""

from __future__ import annotations

import shlex

from roles.app import release as rel


def ship_if_missing(release: rel.Release) -> str:
    """Build the release's venv and unpack the release, each only if not yet on the host."""
    return (f"{{ {rel.venv_ready(release)} || {{ {rel.venv_script(release)}; }}; }} && "
            f"{{ {rel.shipped(release)} || {{ {rel.ship_script(release)}; }}; }}")


def shipped_version(version: str) -> str:
    """Exit 0 when the release of `version` is complete on the host (a rollback target)."""
    return f"[ -f {rel.RELEASES}/{shlex.quote(version)}/.release ]"


def current_version() -> str:
    """Print the version `current` points at (empty when there is none yet)."""
    return f'basename "$(readlink {rel.CURRENT})" 2>/dev/null || true'


def runs_release(pidfile: str, version: str) -> str:
    """Exit 0 when the process in `pidfile` runs from the release dir of `version` (the launcher
    enters `current` before exec, so the working directory names the release it started in)."""
    return f'[ "$(readlink /proc/$(cat {shlex.quote(pidfile)} 2>/dev/null)/cwd)" = {rel.RELEASES}/{shlex.quote(version)} ]'


def listens(pidfile: str, port: int) -> str:
    """Exit 0 when the process in `pidfile` (or its children) holds the listening socket of
    `port`: /health answered by a leftover process on the same port must not count."""
    return f'ss -Hltnp "sport = :{port}" | grep -q "pid=$(cat {shlex.quote(pidfile)} 2>/dev/null),"'


def healthy(address: str, port: int) -> str:
    """Exit 0 when the app instance answers /health with 200."""
    return f"curl -fs -o /dev/null --max-time 2 http://{address}:{port}/health"


def wait_until(check: str, seconds: int) -> str:
    """Poll `check` every 0.2 s for up to `seconds`; exit non-zero naming it when it never passes."""
    loop = f"until {check}; do sleep 0.2; done"
    return f"timeout {seconds} sh -c {shlex.quote(loop)} || {{ echo {shlex.quote(f'not ready after {seconds}s: {check}')}; exit 1; }}"
