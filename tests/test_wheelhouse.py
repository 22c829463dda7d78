"""The release bundle's wheelhouse: every locked dependency a host installs, for each host image's
Python, built once per lock and checked against the lock's hashes; hosts install from it with no index."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from infra import wheelhouse
from infra.bootstrap import render_user_data
from infra.config import load_stack_config
from infra.host_layout import WHEELHOUSE, pip_sources
from infra.lockfile import closure, runtime_closure
from infra.release_artifact import APP_PACKAGES
from infra.role_settings import declared
from infra.storage import HOST_REQUIREMENTS, build_wheelhouse, bundle_archive
from infra.topology import nodes
from infra.wheelhouse import HOST_PYTHONS, WheelhouseError, for_python, missing
from roles.app import release as rel

DEBIAN_12, UBUNTU_2404 = HOST_PYTHONS


def _pins(text: str) -> dict[str, str]:
    return dict(line.split()[0].split("==") for line in text.splitlines())


def test_each_hosts_python_gets_the_entries_its_own_markers_select():
    """Markers are evaluated for the host's Python, not the one building: Debian 12's 3.11.2 needs
    async-timeout (`python_full_version < '3.11.3'`), which a 3.11.7 or a 3.12 would leave out."""
    host = runtime_closure()
    debian, ubuntu = _pins(for_python(host, DEBIAN_12)), _pins(for_python(host, UBUNTU_2404))
    assert "async-timeout" in debian and "async-timeout" not in ubuntu
    assert debian["deprecated"] != ubuntu["deprecated"]  # one entry per side of `python_full_version < '3.12'`
    assert "colorama" not in debian and "tzdata" not in ubuntu  # sys_platform == 'win32'
    assert all(" --hash=sha256:" in line and ";" not in line for line in for_python(host, DEBIAN_12).splitlines())


def test_the_bundle_holds_a_wheel_for_every_locked_host_dependency_for_each_hosts_python():
    """What the ops venv, the app's release venv and munin's venv install is all in the bundle's
    wheelhouse, as wheels each host image's Python runs (built once per lock; cached after)."""
    built = build_wheelhouse()
    bundle = bundle_archive("staging").assets
    assert Path(bundle[wheelhouse.BUNDLE_DIR].path) == built
    app = closure(list(APP_PACKAGES))
    munin = closure(declared("munin_node")["munin_node_python_packages"])
    for python in HOST_PYTHONS:
        assert missing(bundle[HOST_REQUIREMENTS].text, built, python) == [], python
        assert missing(app, built, python) == [] and missing(munin, built, python) == [], python
    # Wheels only: nothing else (no config, no secret) rides along.
    assert {path.suffix for path in built.iterdir()} == {".whl"}


def _wheel(directory: Path, name: str, version: str, tag: str = "py3-none-any") -> str:
    """A minimal valid wheel of `name` in `directory`; returns its lock entry (with its hash)."""
    path = directory / f"{name}-{version}-{tag}.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n")
        wheel.writestr(f"{info}/RECORD", "")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{name}=={version} \\\n    --hash=sha256:{digest}\n    # via photostack\n"


@pytest.fixture
def index(tmp_path, monkeypatch) -> Path:
    """A local package index (a find-links dir) and an empty wheelhouse cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "index").mkdir()
    return tmp_path / "index"


def _sources(index: Path) -> tuple[str, ...]:
    return ("--isolated", "--no-index", "--find-links", str(index))


def test_a_wheelhouse_is_built_once_per_lock_with_every_file_checked_against_its_hash(index):
    text = _wheel(index, "alpha", "1.0") + _wheel(index, "beta", "2.0")
    built = wheelhouse.built(text, _sources(index))
    assert sorted(p.name for p in built.iterdir()) == ["alpha-1.0-py3-none-any.whl", "beta-2.0-py3-none-any.whl"]
    (index / "alpha-1.0-py3-none-any.whl").unlink()
    assert wheelhouse.built(text, _sources(index)) == built  # the same lock: not downloaded again
    # A file that is not the one the lock hashed is refused, naming it, and nothing is left behind.
    other = _wheel(index, "gamma", "3.0")
    (index / "gamma-3.0-py3-none-any.whl").write_bytes(b"tampered")
    with pytest.raises(WheelhouseError, match="gamma==3.0"):
        wheelhouse.built(other, _sources(index))
    assert [p.name for p in built.parent.iterdir()] == [built.name]


def test_a_package_without_a_wheel_for_a_hosts_python_stops_the_build_naming_it(index):
    """One line naming the package and the Python it lacks, at build time: not a failed boot."""
    text = _wheel(index, "alpha", "1.0") + _wheel(index, "native", "4.2", "cp312-cp312-manylinux_2_17_x86_64")
    with pytest.raises(WheelhouseError) as failed:
        wheelhouse.built(text, _sources(index))
    message = str(failed.value)
    assert "\n" not in message and "native==4.2" in message and DEBIAN_12.image in message, message
    assert not wheelhouse.directory(text).exists() and list(wheelhouse.cache_dir().iterdir()) == []


def test_missing_names_what_a_hosts_python_cannot_run(tmp_path):
    text = _wheel(tmp_path, "native", "4.2", "cp312-cp312-manylinux_2_17_x86_64") + _wheel(tmp_path, "pure", "1.0")
    assert missing(text, tmp_path, UBUNTU_2404) == []
    assert missing(text, tmp_path, DEBIAN_12) == ["native==4.2"]


def test_venvs_install_from_the_wheelhouse_with_no_index_where_the_host_has_one(tmp_path):
    """The app's release venv and munin's monitoring venv: the bundle's wheelhouse and no index on
    a host installed from the bundle; the index on the one-box (no wheelhouse there)."""
    script = rel.venv_script(rel.Release("v", b"", "django==1 --hash=sha256:00\n"))
    assert f"pip install -q --disable-pip-version-check {pip_sources()} --require-hashes" in script
    from roles.munin_node.role import venv
    from tests.monitoring.test_munin_roles import onebox_context

    build = next(r for r in venv(onebox_context()) if getattr(r, "name", "").startswith("venv "))
    assert f"pip install -q {pip_sources()} --require-hashes" in build.run
    house = tmp_path / "wheels"
    argv = f"printf '%s\\n' {pip_sources(str(house))}"
    assert subprocess.run(["bash", "-c", argv], capture_output=True, text=True).stdout == "\n"
    house.mkdir()
    assert subprocess.run(["bash", "-c", argv], capture_output=True, text=True).stdout.split() == [
        "--no-index", "--find-links", str(house)]


def test_user_data_fetches_the_bundle_without_pypi_and_installs_with_no_index():
    """Before the bundle is there, boto3 is the distro's (apt); after, every pip install of the
    user_data takes the bundle's wheelhouse and no index."""
    for node in nodes(load_stack_config("staging")):
        script = render_user_data("staging", node, "us-east-1", "bucket-x", "release/photostack.zip")
        before, after = script.split("unzip -q /opt/photostack/release.zip", 1)
        assert "python3-boto3" in before and "pip " not in before
        assert "/usr/bin/python3 - <<'PY'\nimport boto3\n" in before
        installs = [line for line in after.splitlines() if " install " in line and "/bin/pip" in line]
        assert len(installs) == 2 and all(f"--no-index --find-links {WHEELHOUSE} " in i for i in installs), installs
        assert f"--require-hashes -r /opt/photostack/release/{HOST_REQUIREMENTS}" in installs[0]


def test_the_labs_bundle_never_leaves_the_wheelhouse_out_silently(tmp_path):
    """The lab zips the bundle as the engine would: a wheelhouse not built is an error, not a
    bundle without wheels (whose hosts would fail at boot)."""
    import pulumi

    from lab.seed import zip_archive

    archive = pulumi.AssetArchive({wheelhouse.BUNDLE_DIR: pulumi.FileArchive(str(tmp_path / "not-built"))})
    with pytest.raises(FileNotFoundError, match="wheels/"):
        zip_archive(archive, tmp_path / "bundle.zip")
