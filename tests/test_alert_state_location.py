"""An AWS monitoring host's hooks and health watcher run the host's own code and keep the alert
state where `ops alerts` reads it (tests/test_ops_alerts_aws.py), whichever machine renders them:
the host at boot, or an operator's laptop (`ops converge`, a failover's follow-up converge)."""

from __future__ import annotations

import pytest

from infra import host_layout
from infra.config import REPO_ROOT

STACK = "staging"
MONITOR = "munin_master-0"


@pytest.mark.parametrize("converged_from", ["the host at boot", "an operator's laptop"])
def test_the_monitoring_host_runs_its_own_code_and_state_whoever_renders_it(converged_from, moto_account, monkeypatch):
    from infra.config import load_stack_config
    from infra.inventory import Host
    from infra.topology import nodes
    from roles.context import RoleContext
    from roles.engine.resources import File
    from roles.munin_master.role import desired

    for key, value in {"AWS_ENDPOINT_URL": moto_account, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"}.items():  # the records it renders from: none yet
        monkeypatch.setenv(key, value)
    if converged_from == "the host at boot":
        monkeypatch.setenv("PHOTOSTACK_STATE_DIR", str(host_layout.STATE_ROOT))  # as the user_data exports it
    else:
        monkeypatch.setenv("PHOTOSTACK_STATE_DIR", "/home/alice/photostack/.state")
    config = load_stack_config(STACK)
    hosts = tuple(Host(n.name, f"10.30.0.{i + 10}", 22, "ubuntu", (n,)) for i, n in enumerate(nodes(config)))
    monitor = next(h for h in hosts if h.name == MONITOR)
    state = desired(RoleContext(config, STACK, monitor, hosts, lambda name: f"secret-{name}"))

    assert str(REPO_ROOT) not in repr(state) and "/home/alice" not in repr(state)
    hooks = [r.content for r in state.resources if isinstance(r, File) and r.path.startswith("/usr/local/sbin/photostack-")]
    assert len(hooks) == 2
    for hook in hooks:
        assert f" PYTHONPATH={host_layout.BUNDLE_DIR} PHOTOSTACK_STATE_DIR={host_layout.STATE_ROOT} " in hook
        assert f"\n    {host_layout.OPS_VENV}/bin/python -P -m monitoring." in hook
    (watcher,) = [r for r in state.resources if getattr(r, "name", "") == "photostack-health-watcher"]
    assert f"PYTHONPATH={host_layout.BUNDLE_DIR} {host_layout.OPS_VENV}/bin/python -m monitoring.agents.health_watcher" in watcher.start


def test_the_user_data_makes_the_layout_the_roles_name():
    from infra.bootstrap import render_user_data
    from infra.config import load_stack_config
    from infra.topology import nodes

    (node,) = [n for n in nodes(load_stack_config(STACK)) if n.name == MONITOR]
    script = render_user_data(STACK, node, "us-east-1", "bucket", "key")
    assert f"python3 -m venv {host_layout.OPS_VENV}\n" in script
    assert f"unzip -q /opt/photostack/release.zip -d {host_layout.BUNDLE_DIR}\n" in script
    assert f"{host_layout.OPS_VENV}/bin/pip install -q --no-index --find-links {host_layout.WHEELHOUSE} " \
           f"--no-deps --no-build-isolation {host_layout.BUNDLE_DIR}\n" in script
    assert f" PHOTOSTACK_STATE_DIR={host_layout.STATE_ROOT}\n" in script
