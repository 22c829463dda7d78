"""Converge speed: no-op converges of the one-box, of N simulated hosts, and Ansible on the same work.

Prints figures; it is not a test. Needs the one-box up (`make up`).
Goals: one-box no-op <= 1 s and >= 10x faster than Ansible; 50 hosts <= 3 s.

- one-box no-op: `ops converge` of every role on the one-box, nothing to change (median of 5).
- N hosts: N loopback addresses 127.0.0.2.. served by extra sshds of the one-box, each a
  web-tier host (base + nginx roles, as an nginx or app fleet member has) converged in parallel;
  all point at this machine, so each is a real no-op.
- Ansible: a playbook doing the same three things as our nginx core (template nginx.conf, ensure
  the package, ensure the service running) against the same host, over the same sshd, with
  Ansible's defaults (fact gathering on, ControlPersist on) and tuned (no facts, pipelining).
- Whole processes, what a user waits for: `ops --help` start-up, and `ops converge --role nginx`
  against the tuned `ansible-playbook`, run in alternating pairs (median of each, and of the
  per-pair ratios), both starting from a fresh interpreter.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infra import onebox  # noqa: E402
from ops.stack import Stack  # noqa: E402
from roles.engine.executor import SshSettings, converge_hosts  # noqa: E402
from roles.engine.resources import DesiredState, File, Packages, Service  # noqa: E402

RUNS = 5


def median_seconds(action, runs: int = RUNS) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def assert_noop(results) -> None:
    for result in results:
        if result.failed or result.changed:
            what = result.failed or [c.resource for c in result.changed]
            raise SystemExit(f"not a no-op on {result.host.name}: {what}")


def onebox_noop(stack: Stack) -> float:
    return median_seconds(lambda: assert_noop(stack.converge(stack.hosts)))


def cli_noop() -> float:
    ops = [sys.executable, "-m", "ops", "converge"]
    return median_seconds(lambda: subprocess.run(ops, cwd=ROOT, check=True, capture_output=True), runs=3)


WEB_TIER = {"base", "nginx"}
# sshd listens on at most 16 sockets (MAX_LISTEN_SOCKS), so 50 addresses need several sshds.
ADDRESSES_PER_SSHD = 16


def simulated_hosts(stack: Stack, count: int) -> float:
    """No-op converge of `count` hosts, 127.0.0.2 … , answered by extra sshds of the one-box."""
    paths = onebox.ssh_paths(stack.state)
    port = stack.config.onebox.ssh_port + 1
    addresses = [f"127.0.0.{i + 2}" for i in range(count)]
    groups = [addresses[i:i + ADDRESSES_PER_SSHD] for i in range(0, count, ADDRESSES_PER_SSHD)]
    names = [f"bench{i}" for i in range(len(groups))]
    try:
        for name, group in zip(names, groups):
            onebox.start_sshd(paths, group, port, name=name)
        known_hosts = paths.known_hosts_file("bench")
        known_hosts.write_text("".join(paths.known_hosts_file(n).read_text() for n in names))
        box = stack.hosts[0]
        state = stack.desired(box, WEB_TIER)
        hosts = [replace(box, name=f"sim{i}", address=a, port=port) for i, a in enumerate(addresses)]
        ssh = SshSettings(paths.client_key, known_hosts)
        return median_seconds(lambda: assert_noop(converge_hosts(hosts, lambda h: state, ssh)), runs=3)
    finally:
        for name in names:
            onebox.stop_sshd(paths, name=name)


PLAYBOOK = """
- hosts: onebox
  gather_facts: {gather}
  tasks:
    - name: nginx package
      ansible.builtin.apt: {{name: nginx, state: present}}
    - name: nginx.conf
      ansible.builtin.template: {{src: "{template}", dest: /etc/nginx/nginx.conf, owner: root, group: root, mode: "0644"}}
    - name: nginx running
      ansible.builtin.service: {{name: nginx, state: started}}
"""


def nginx_core(stack: Stack) -> DesiredState:
    """The same three things the playbook does, as our resources."""
    state = stack.desired(stack.hosts[0], {"nginx"})
    keep = [r for r in state.resources if isinstance(r, (Packages, Service))
            or (isinstance(r, File) and r.path == "/etc/nginx/nginx.conf")]
    return DesiredState(keep, state.handlers)


def ansible_command(stack: Stack, tuned: bool, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The playbook run (argv, environment) doing our nginx core, its files written under `tmp_path`."""
    paths = onebox.ssh_paths(stack.state)
    box = stack.config.onebox
    nginx_conf = next(r for r in nginx_core(stack).resources if isinstance(r, File)).content
    template = tmp_path / "nginx.conf.j2"
    template.write_text("{% raw %}" + nginx_conf + "{% endraw %}")
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(PLAYBOOK.format(gather="false" if tuned else "true", template=template))
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        f"onebox ansible_host={box.address} ansible_port={box.ssh_port} ansible_user=root "
        f"ansible_ssh_private_key_file={paths.client_key} ansible_python_interpreter=/usr/bin/python3\n"
    )
    env = {
        **os.environ,
        "ANSIBLE_SSH_ARGS": f"-o UserKnownHostsFile={paths.known_hosts} -o ControlMaster=auto -o ControlPersist=60s",
        "ANSIBLE_PIPELINING": "true" if tuned else "false",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "ANSIBLE_NOCOLOR": "1",
    }
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(playbook)]
    return command, env


def ansible_noop(stack: Stack, tuned: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        command, env = ansible_command(stack, tuned, Path(tmp))
        first = subprocess.run(command, env=env, capture_output=True, text=True)
        if first.returncode != 0 or "changed=0" not in first.stdout:
            raise SystemExit(f"ansible run was not a clean no-op:\n{first.stdout}\n{first.stderr}")
        return median_seconds(lambda: subprocess.run(command, env=env, check=True, capture_output=True), runs=3)


def cli_startup(runs: int = 11) -> float:
    """`ops --help` as a whole process (interpreter start and imports included)."""
    command = [sys.executable, "-m", "ops", "--help"]
    return median_seconds(lambda: subprocess.run(command, cwd=ROOT, check=True, capture_output=True), runs=runs)


def whole_process_pairs(stack: Stack, pairs: int = 5) -> tuple[float, float, float]:
    """Median seconds of `ops converge --role nginx` and of the tuned playbook, and the median per-pair ratio."""
    ours_command = [sys.executable, "-m", "ops", "converge", "--role", "nginx"]
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        command, env = ansible_command(stack, True, Path(tmp))
        subprocess.run(command, env=env, check=True, capture_output=True)  # warm ControlPersist, as a user's second run
        for _ in range(pairs):
            for samples, argv, environment in ((ours, ours_command, None), (theirs, command, env)):
                started = time.perf_counter()
                subprocess.run(argv, cwd=ROOT, env=environment, check=True, capture_output=True)
                samples.append(time.perf_counter() - started)
    ratio = statistics.median(t / o for o, t in zip(ours, theirs))
    return statistics.median(ours), statistics.median(theirs), ratio


def main() -> None:
    print(f"`ops --help` start-up, whole process: {cli_startup():.3f} s (goal <= 0.3 s)")
    stack = Stack.load("onebox")
    stack.prepare()
    stack.converge(stack.hosts)  # measure no-ops: bring the one-box to this checkout's state first
    core = nginx_core(stack)
    ours_core = median_seconds(lambda: assert_noop(converge_hosts(stack.hosts, lambda h: core, stack.ssh)))
    full = onebox_noop(stack)
    print(f"one-box no-op converge, all roles ({len(stack.desired(stack.hosts[0]).resources)} resources): "
          f"{full:.3f} s (goal <= 1 s)")
    print(f"one-box no-op via the ops CLI (process start included): {cli_noop():.3f} s")
    for count in (1, 10, 50):
        print(f"no-op converge of {count:>2} simulated web-tier hosts in parallel: {simulated_hosts(stack, count):.3f} s"
              + ("  (goal <= 3 s)" if count == 50 else ""))
    print(f"nginx core (package, nginx.conf, service), photostack: {ours_core:.3f} s")
    for tuned in (False, True):
        label = "ansible (no facts, pipelining)" if tuned else "ansible (defaults)"
        seconds = ansible_noop(stack, tuned)
        print(f"nginx core, {label}: {seconds:.3f} s  -> the photostack engine alone is {seconds / ours_core:.1f}x faster")
    ours, theirs, ratio = whole_process_pairs(stack)
    print(f"whole processes: `ops converge --role nginx` {ours:.3f} s vs `ansible-playbook` (no facts, pipelining) "
          f"{theirs:.3f} s -> ops is {ratio:.1f}x faster end to end (median of paired runs; goal >= 10x)")


if __name__ == "__main__":
    main()
