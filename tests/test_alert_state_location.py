"""Where the monitoring host keeps an AWS stack's alert state (`ops alerts` reads it there,
tests/test_ops_alerts_aws.py): the same path whichever machine renders its hooks."""

from __future__ import annotations

import pytest

from infra.state import HOST_STATE_ROOT

STACK = "staging"
MONITOR = "munin_master-0"


@pytest.mark.parametrize("converged_from", ["the host at boot", "an operator's laptop"])
def test_the_hooks_keep_the_alert_state_where_ops_reads_it_whoever_converges(converged_from, moto_account, monkeypatch):
    """The role renders the hooks' state dir from the stack, not from the converging machine's
    environment: an operator's `ops converge` (or a failover's) leaves them where they were."""
    from infra.config import load_stack_config
    from infra.inventory import Host
    from infra.topology import nodes
    from roles.engine.context import RoleContext
    from roles.munin_master.role import desired

    for key, value in {"AWS_ENDPOINT_URL": moto_account, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"}.items():  # the records it renders from: none yet
        monkeypatch.setenv(key, value)
    if converged_from == "the host at boot":
        monkeypatch.setenv("PHOTOSTACK_STATE_DIR", str(HOST_STATE_ROOT))  # as the user_data exports it
    else:
        monkeypatch.setenv("PHOTOSTACK_STATE_DIR", "/home/alice/photostack/.state")
    config = load_stack_config(STACK)
    hosts = tuple(Host(n.name, f"10.30.0.{i + 10}", 22, "ubuntu", (n,)) for i, n in enumerate(nodes(config)))
    monitor = next(h for h in hosts if h.name == MONITOR)
    state = desired(RoleContext(config, STACK, monitor, hosts, lambda name: f"secret-{name}"))
    hooks = [r.content for r in state.resources if getattr(r, "path", "").startswith("/usr/local/sbin/photostack-")]
    assert len(hooks) == 2
    assert all(f" PHOTOSTACK_STATE_DIR={HOST_STATE_ROOT} " in hook for hook in hooks)


def test_the_user_data_runs_the_boot_converge_with_the_hosts_state_dir():
    from infra.bootstrap import render_user_data
    from infra.config import load_stack_config
    from infra.topology import nodes

    (node,) = [n for n in nodes(load_stack_config(STACK)) if n.name == MONITOR]
    script = render_user_data(STACK, node, "us-east-1", "bucket", "key")
    assert f" PHOTOSTACK_STATE_DIR={HOST_STATE_ROOT}\n" in script
