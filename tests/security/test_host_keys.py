"""Host keys: the engine talks only to hosts (and bastions) whose SSH key is pinned, and an AWS stack
pins keys from the EC2 API, never from whatever answers on the network.

A real sshd on loopback plays the host; a swapped key plays the attacker in the middle.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from infra import onebox
from infra.config import ConfigError
from infra.host_keys import console_host_keys, pin_host_keys
from infra.inventory import Host
from roles.engine.executor import SshSettings, converge_host
from roles.engine.resources import DesiredState, File

NAME = "hostkey-test"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[onebox.OneBoxSsh, int]]:
    """A throwaway sshd on a free loopback port (the one-box's own sshd code, its own keys)."""
    paths = onebox.ssh_paths(tmp_path_factory.mktemp("sshd"))
    onebox.ensure_keys(paths)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    onebox.start_sshd(paths, ["127.0.0.1"], port, NAME)
    yield paths, port
    onebox.stop_sshd(paths, NAME)


def other_key(tmp_path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    return " ".join((tmp_path / "other.pub").read_text().split()[:2])


def probe_file(tmp_path: Path) -> DesiredState:
    return DesiredState([File(str(tmp_path / "written-by-converge"), "x\n")])


def test_the_pinned_key_connects(sshd, tmp_path: Path) -> None:
    paths, port = sshd
    host = Host("h", "127.0.0.1", port, "root", ())

    result, _ = converge_host(host, probe_file(tmp_path), SshSettings(paths.client_key, paths.known_hosts_file(NAME)))

    assert result.failed == []
    assert (tmp_path / "written-by-converge").read_text() == "x\n"


def test_a_swapped_host_key_is_refused_before_anything_runs(sshd, tmp_path: Path) -> None:
    paths, port = sshd
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {other_key(tmp_path)}\n")

    result, _ = converge_host(Host("h", "127.0.0.1", port, "root", ()), probe_file(tmp_path),
                              SshSettings(paths.client_key, known_hosts))

    assert [what for what, _ in result.failed] == ["ssh"]
    assert "does not match" in result.failed[0][1]
    assert not (tmp_path / "written-by-converge").exists()


def test_a_swapped_bastion_key_is_refused(sshd, tmp_path: Path) -> None:
    """The bastion hop is pinned too (it used to accept any key). The host behind it is a closed
    loopback port: an unpinned bastion would get as far as trying to reach it."""
    paths, port = sshd
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {other_key(tmp_path)}\n")
    behind_bastion = Host("h", "127.0.0.1", 1, "root", (), gateway=f"root@127.0.0.1:{port}")

    result, _ = converge_host(behind_bastion, probe_file(tmp_path), SshSettings(paths.client_key, known_hosts))

    assert [what for what, _ in result.failed] == ["ssh"]
    assert "does not match" in result.failed[0][1]


CLOUD_INIT_CONSOLE = """[   12.3] cloud-init[812]: Cloud-init v. 24.1 running 'modules:final'
-----BEGIN SSH HOST KEY FINGERPRINTS-----
256 SHA256:abc root@ip-10-0-1-5 (ECDSA)
-----END SSH HOST KEY FINGERPRINTS-----
-----BEGIN SSH HOST KEY KEYS-----
ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAI root@ip-10-0-1-5
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ root@ip-10-0-1-5
-----END SSH HOST KEY KEYS-----
"""


def test_keys_are_read_from_cloud_inits_console_block_only() -> None:
    assert console_host_keys(CLOUD_INIT_CONSOLE) == [
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAI", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ"]
    assert console_host_keys("Linux version 6.8 ...\n") == []


def test_an_instance_without_published_keys_is_never_trusted(moto_account: str, tmp_path: Path) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_account,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    instance = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]

    with pytest.raises(ConfigError) as refused:
        pin_host_keys([instance], ec2, tmp_path)

    assert refused.value.problems == [f"instance {instance['InstanceId']}: no SSH host key in its console "
                                      "output yet (cloud-init prints it at first boot); retry in a minute"]
    assert not (tmp_path / "known_hosts").exists()


def test_pinned_keys_stay_pinned_and_go_with_their_instance(moto_account: str, tmp_path: Path) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_account,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    instance = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]
    (tmp_path / "host_keys.json").write_text(json.dumps({instance["InstanceId"]: ["ssh-ed25519 AAAApinned"],
                                                         "i-terminated": ["ssh-ed25519 AAAAold"]}))

    known_hosts = pin_host_keys([instance], ec2, tmp_path)

    addresses = [instance["PrivateIpAddress"], instance["PublicIpAddress"]]
    assert known_hosts.read_text() == "".join(f"{a} ssh-ed25519 AAAApinned\n" for a in addresses)
    assert json.loads((tmp_path / "host_keys.json").read_text()) == {
        instance["InstanceId"]: ["ssh-ed25519 AAAApinned"]}
