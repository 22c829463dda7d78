"""munin_node: Munin's agent with the plugins that fit the host. Venv → plugins → configure → service."""

from __future__ import annotations

import hashlib

from infra.host_layout import pip_sources
from infra.lockfile import closure
from roles.context import RoleContext
from roles.engine.resources import Command, DesiredState, Directory, File, Handler, Packages, Service
from roles.munin_node.plugins import HELPER, PLUGIN_DIR, host_plugins, munin_name
from infra.topology import Node

RESTART = "restart munin-node"
PLUGINS_LINK_DIR = "/etc/munin/plugins"


def requirements(names: list[str]) -> str:
    """Requirements with hashes for `names` and everything they need, from the one lock file."""
    return closure(names)


def venv(ctx: RoleContext) -> list:
    """The monitoring venv, rebuilt only when its pinned requirements change."""
    d = ctx.defaults("munin_node")
    path = d["munin_node_venv"]
    wanted = f"{path}.requirements.txt"
    built = f"{path}/.photostack-requirements.txt"  # copied in only after a successful install
    pins = requirements(d["munin_node_python_packages"])
    digest = hashlib.sha256(pins.encode()).hexdigest()
    return [
        Packages(("python3-venv",)),
        Directory(path.rsplit("/", 1)[0]),
        File(wanted, pins),
        # Compared with the wanted pins themselves, not with the file above: every check runs
        # before anything changes, so a file written in the same converge would be seen too late.
        Command(f"venv {path}", unless=f'[ "$(sha256sum < {built} 2>/dev/null | cut -d" " -f1)" = {digest} ]',
                # Debian's python3 by full path: a login PATH may find another (e.g. pyenv under /root,
                # which the plugins' user cannot read). From the host's wheelhouse where it has one.
                run=f"rm -rf {path} && /usr/bin/python3 -m venv {path} "
                    f"&& {path}/bin/pip install -q {pip_sources()} --require-hashes -r {wanted} "
                    f"&& cp {wanted} {built}",
                notify=(RESTART,)),
    ]


def plugin_script(source: str, python: str) -> str:
    """A plugin's text with its shebang pointed at the venv's python."""
    text = (PLUGIN_DIR / source).read_text()
    return f"#!{python}\n" + text.split("\n", 1)[1]


def link(name: str, target: str) -> Command:
    path = f"{PLUGINS_LINK_DIR}/{name}"
    return Command(f"plugin {name}", run=f"ln -sfn {target} {path}", unless=f'[ "$(readlink {path})" = {target} ]',
                   notify=(RESTART,))


def desired(ctx: RoleContext) -> DesiredState:
    d = ctx.defaults("munin_node")
    lib, python = d["munin_node_lib_dir"], f"{d['munin_node_venv']}/bin/python"
    plugins = host_plugins(ctx)
    sources = sorted({p.source for p in plugins})
    names = sorted([p.name for p in plugins] + d["munin_node_system_plugins"])
    node = Node("munin_node", 0, "")
    masters = sorted({ctx.address(n) for h in ctx.hosts for n in h.nodes_of("munin_master")})
    listing = " ".join(names)
    return DesiredState(
        resources=[
            # install
            Packages(("munin-node",)),
            *venv(ctx),
            # plugins: the scripts, one link per instance, nothing else
            Directory(lib),
            Directory(f"{lib}/plugins"),
            File(f"{lib}/photostack_munin.py", HELPER.read_text(), notify=(RESTART,)),
            *[File(f"{lib}/plugins/{s}", plugin_script(s, python), mode=0o755, notify=(RESTART,)) for s in sources],
            *[link(p.name, f"{lib}/plugins/{p.source}") for p in plugins],
            *[link(name, f"/usr/share/munin/plugins/{name}") for name in d["munin_node_system_plugins"]],
            Command("prune unmanaged plugins", notify=(RESTART,),
                    unless=f'[ "$(LC_ALL=C ls {PLUGINS_LINK_DIR} | xargs)" = "{listing}" ]',
                    run=f"cd {PLUGINS_LINK_DIR} && ls | grep -vxF -e {' -e '.join(names)} | xargs -r rm -f"),
            # configure
            File("/etc/munin/plugin-conf.d/photostack", ctx.template("munin_node", "plugin-conf.j2", plugins=plugins),
                 mode=0o600, sensitive=True, notify=(RESTART,)),
            File("/etc/munin/munin-node.conf",
                 ctx.template("munin_node", "munin-node.conf.j2", bind=ctx.bind_address, port=ctx.port(node),
                              allow=sorted({"127.0.0.1", *masters}), host_name=munin_name(ctx.host.name)),
                 notify=(RESTART,)),
            # service
            Service.init_script("munin-node"),
        ],
        handlers=[Handler(RESTART, "service munin-node restart")],
    )
