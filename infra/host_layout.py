"""Paths on an AWS (or lab) host: what its user_data makes (infra/templates/user_data.sh.j2) and
the roles name. Roles render on the host at boot or on an operator's machine later (`ops converge`,
a failover's follow-up): a path on the host must come from here, never from the rendering machine.
"""

from __future__ import annotations

from pathlib import PurePosixPath

# The venv `ops` runs from on a host: its own, apart from every venv a role builds (munin_node's
# monitoring venv, the app's release venvs), which a converge may rebuild under it. The project
# and its run-time dependencies are installed in it.
OPS_VENV = "/opt/photostack/ops-venv"
# Where the release bundle unpacks: the project's packages, the stack config, the app release.
BUNDLE_DIR = "/opt/photostack/release"
# The bundle's wheelhouse (infra/wheelhouse.py): every locked dependency a host installs.
WHEELHOUSE = f"{BUNDLE_DIR}/wheels"
# The host's state dir root: the boot converge's $PHOTOSTACK_STATE_DIR, and the monitoring host's
# alert state (infra/state.py `host_state_dir`).
STATE_ROOT = PurePosixPath("/var/lib/photostack")
# Where a database host keeps its Postgres clusters (`<here>/<major>/<cluster>`, Debian's layout;
# also the postgres account's home): where the host's own data volume is mounted (AWS), which
# infra/fleet.py tags the volume with and roles/postgres mounts before any cluster exists.
POSTGRES_DATA = "/var/lib/postgresql"


def pip_sources(wheelhouse: str = WHEELHOUSE) -> str:
    """pip's index options for a venv a role builds on a host, as shell text: the bundle's
    wheelhouse and no index where the host has one (AWS and lab hosts, installed from the bundle:
    no PyPI needed); the index on the one-box (a checkout, whose `make setup` installs from the
    index anyway: a wheelhouse there would download the same files a second time)."""
    return f'$([ -d {wheelhouse} ] && echo "--no-index --find-links {wheelhouse}")'
