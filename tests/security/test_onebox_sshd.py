"""The one-box sshd admits root with the engine's key and nothing more: no other account (the
authorized keys file is one absolute path, so any account with a shell would otherwise accept the
same key), no port forwarding."""

from __future__ import annotations

import paramiko
import pytest

from infra import onebox as onebox_ssh


def client(box, user: str) -> paramiko.SSHClient:
    paths = onebox_ssh.ssh_paths(box.state)
    ssh = paramiko.SSHClient()
    ssh.load_host_keys(str(paths.known_hosts))
    ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
    ssh.connect(box.config.onebox.address, box.config.onebox.ssh_port, username=user,
                key_filename=str(paths.client_key), look_for_keys=False, allow_agent=False, timeout=10)
    return ssh


@pytest.mark.onebox
def test_only_root_may_log_in(onebox) -> None:
    client(onebox, "root").close()
    with pytest.raises(paramiko.AuthenticationException):
        client(onebox, "postgres")


@pytest.mark.onebox
def test_no_port_forwarding(onebox) -> None:
    ssh = client(onebox, "root")
    try:
        with pytest.raises(paramiko.ChannelException):
            ssh.get_transport().open_channel("direct-tcpip", ("127.0.0.1", onebox.config.onebox.http_port),
                                             ("127.0.0.1", 0), timeout=10)
    finally:
        ssh.close()
