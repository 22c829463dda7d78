#!/usr/bin/python3
"""What cloud-init does at an EC2 instance's first boot, for a lab host (runs inside the host, as root).

`keys`: make this host's SSH host keys (the image has none) and print their public halves to the
console between cloud-init's markers, where EC2's GetConsoleOutput shows them.
`user-data`: make the image's default user (`ubuntu`, sudo without password, the key pair's public
key from the metadata service, as cloud-init does on Ubuntu images), then fetch this instance's user_data from the instance metadata service (IMDSv2) and run
it once, logging its exit status to the console as cloud-init does.
"""

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

IMDS = "http://169.254.169.254"
STATE = Path("/var/lib/cloud/instance")
TRIES = 60  # one a second: the metadata service may start a moment after the host


def console(text: str) -> None:
    with open("/dev/console", "w") as out:
        out.write(text + "\n")


def keys() -> None:
    subprocess.run(["ssh-keygen", "-A"], check=True, stdout=subprocess.DEVNULL)
    public = [" ".join(p.read_text().split()[:2]) + " root@" + Path("/etc/hostname").read_text().strip()
              for p in sorted(Path("/etc/ssh").glob("ssh_host_*_key.pub"))]
    console("\n".join(["-----BEGIN SSH HOST KEY KEYS-----", *public, "-----END SSH HOST KEY KEYS-----"]))


def metadata(path: str) -> bytes:
    for attempt in range(TRIES):
        try:
            token_request = urllib.request.Request(
                f"{IMDS}/latest/api/token", method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
            token = urllib.request.urlopen(token_request, timeout=5).read().decode()
            request = urllib.request.Request(f"{IMDS}/latest/{path}",
                                             headers={"X-aws-ec2-metadata-token": token})
            return urllib.request.urlopen(request, timeout=5).read()
        except urllib.error.HTTPError as error:
            if error.code == 404:  # e.g. an instance launched without user_data
                return b""
            if attempt == TRIES - 1:
                raise SystemExit(f"instance metadata {path}: {error}")
            time.sleep(1)
        except OSError as error:
            if attempt == TRIES - 1:
                raise SystemExit(f"instance metadata {path}: {error}")
            time.sleep(1)
    raise AssertionError("unreachable")


DEFAULT_USER = "ubuntu"


def default_user() -> None:
    home = Path("/home") / DEFAULT_USER
    if not home.exists():
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", DEFAULT_USER], check=True)
        Path("/etc/sudoers.d/90-cloud-init-users").write_text(f"{DEFAULT_USER} ALL=(ALL) NOPASSWD:ALL\n")
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_bytes(metadata("meta-data/public-keys/0/openssh-key") + b"\n")
    subprocess.run(["chown", "-R", f"{DEFAULT_USER}:{DEFAULT_USER}", str(ssh)], check=True)


def user_data() -> None:
    done = STATE / "boot-finished"
    if done.exists():
        return
    default_user()
    STATE.mkdir(parents=True, exist_ok=True, mode=0o700)
    script = STATE / "user-data.txt"
    script.write_bytes(metadata("user-data"))
    script.chmod(0o700)
    started = time.monotonic()
    status = subprocess.run([str(script)]).returncode if script.read_bytes() else 0  # none given
    elapsed = time.monotonic() - started
    console(f"Cloud-init v. lab finished: user_data exit status {status} after {elapsed:.1f} seconds")
    done.write_text(f"{status} {elapsed:.1f}\n")
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    {"keys": keys, "user-data": user_data}[sys.argv[1]]()
