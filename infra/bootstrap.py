"""Host bootstrap: the cloud-init user_data that installs the release bundle and converges the node's roles.

Rendering is a pure function of plain values (no Outputs) so tests can read the script; the fleet
applies it once the bundle's bucket name is known.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2

from infra.inventory import Host
from infra.secrets_store import parameter_name
from infra.host_layout import BUNDLE_DIR, OPS_VENV, STATE_ROOT, WHEELHOUSE
from infra.release_artifact import BUNDLE_ARTIFACT
from infra.topology import Node

TEMPLATES = Path(__file__).resolve().parent / "templates"
USER_DATA = "user_data.sh.j2"
# A boot converge that fails (a peer not up yet) is retried: 10 tries 30 s apart, ~5 minutes.
CONVERGE_ATTEMPTS = 10
CONVERGE_RETRY_S = 30


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    return env.get_template(USER_DATA)


def roles_of(node: Node) -> tuple[str, ...]:
    """The roles a host holding only `node` converges (the same rule as the one-box's)."""
    return Host(node.name, "", 22, "ubuntu", (node,)).roles


def render_user_data(stack: str, node: Node, region: str, bucket: str, key: str) -> str:
    """The user_data script of the instance that runs `node`."""
    return _template().render(
        managed_by=f"Managed by photostack (infra/templates/{USER_DATA}).",
        stack=stack,
        node=node.name,
        roles=roles_of(node),
        region=region,
        bucket=bucket,
        key=key,
        artifact=BUNDLE_ARTIFACT,
        ops_venv=OPS_VENV,
        bundle_dir=BUNDLE_DIR,
        state_root=STATE_ROOT,
        parameter_path=parameter_name(stack, ""),
        converge_attempts=CONVERGE_ATTEMPTS,
        converge_retry_s=CONVERGE_RETRY_S,
        wheelhouse=WHEELHOUSE,
    )
