"""Release builds (infra/release_artifact.py, roles/app/release.py): deterministic tarballs, versions
from git, what ships, and the built artifact a host reads instead of a checkout."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from infra import release_artifact
from infra.lockfile import parse
from roles.app import release as rel


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A tiny git repo shaped like photostack's."""
    root = tmp_path / "repo"
    (root / "app").mkdir(parents=True)
    (root / "infra").mkdir()
    (root / "roles").mkdir()
    (root / "app" / "views.py").write_text("from infra.config import X\nprint('v1', X)\n")
    (root / "infra" / "__init__.py").write_text("")
    (root / "infra" / "config.py").write_text("X = 1\n")
    # The Pulumi program: no app module imports it.
    (root / "infra" / "load_balancer.py").write_text("from infra.config import X\nALARM_THRESHOLD = 5\n")
    (root / "roles" / "role.py").write_text("# not shipped\n")
    (root / ".gitignore").write_text("*.pyc\n")
    (root / "pyproject.toml").write_text((rel.REPO_ROOT / "pyproject.toml").read_text())
    (root / "requirements.lock").write_text((rel.REPO_ROOT / "requirements.lock").read_text())
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    return root


def names(tarball: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        return tar.getnames()


def test_clean_tree_is_versioned_by_commit_and_builds_identically(repo):
    first = rel.release_of(repo)
    again = rel.release_of(repo)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert first.version == head
    assert first.tarball == again.tarball
    assert names(first.tarball) == ["app/views.py", "infra/__init__.py", "infra/config.py", "pyproject.toml"]


def test_a_commit_that_ships_nothing_keeps_the_version(repo):
    """Docs, roles or tests alone: same version, so converge does not restart the app fleet."""
    before = rel.release_of(repo)
    (repo / "roles" / "role.py").write_text("# changed, still not shipped\n")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "roles only")
    assert rel.release_of(repo).version == before.version
    (repo / "app" / "views.py").write_text("print('v2')\n")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "app")
    assert rel.release_of(repo).version != before.version


def test_an_infra_only_commit_keeps_the_version_and_what_the_app_imports_changes_it(repo):
    """A CloudWatch alarm edit in the Pulumi program ships nothing: the app fleet keeps running.
    The model the app imports (infra/config.py here) ships, so a change to it is a new release."""
    commit = ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam"]
    before = rel.release_of(repo)
    (repo / "infra" / "load_balancer.py").write_text("from infra.config import X\nALARM_THRESHOLD = 9\n")
    assert rel.release_of(repo).version == before.version  # not even dirty
    git(repo, *commit, "alarm threshold")
    assert rel.release_of(repo).version == before.version
    (repo / "infra" / "config.py").write_text("X = 2\n")
    git(repo, *commit, "model")
    model = rel.release_of(repo)
    assert model.version != before.version
    (repo / "app" / "views.py").write_text("from infra.config import X\nprint('v2', X)\n")
    git(repo, *commit, "app")
    assert rel.release_of(repo).version not in (before.version, model.version)


def test_the_release_ships_the_app_and_the_model_it_imports_not_the_program():
    shipped = release_artifact.release_files()
    assert {"app/wsgi.py", "infra/sharding.py", "infra/config.py", "monitoring/integrations/sentry.py"} <= set(shipped)
    assert not {"infra/load_balancer.py", "infra/program.py", "monitoring/agents/health_watcher.py"} & set(shipped)


def test_dirty_tree_gets_a_content_version_and_ignored_files_stay_out(repo):
    clean = rel.release_of(repo)
    (repo / "app" / "views.py").write_text("print('v2')\n")
    (repo / "app" / "new.py").write_text("NEW = 1\n")
    (repo / "app" / "junk.pyc").write_bytes(b"\0")
    dirty = rel.release_of(repo)
    assert dirty.version.startswith(clean.version + "-dirty-")
    assert "app/new.py" in names(dirty.tarball) and "app/junk.pyc" not in names(dirty.tarball)
    (repo / "app" / "views.py").write_text("print('v3')\n")
    assert rel.release_of(repo).version != dirty.version


def test_venv_is_keyed_by_the_locked_pins_and_installs_them_with_hashes(repo):
    names_ = ("django", "gunicorn")
    one = rel.Release("v", b"", release_artifact.requirements(repo, names_))
    pinned = [line.split("==")[0] for line in one.requirements.splitlines() if "==" in line]
    # The packages and what they need (Django: asgiref, sqlparse), each with its hashes.
    assert {"django", "gunicorn", "asgiref", "sqlparse"} <= set(pinned) and "pytest" not in pinned
    assert all("--hash=sha256:" in entry.text for entry in parse(one.requirements))
    assert "--require-hashes" in rel.venv_script(one)
    before = rel.release_of(repo).version
    lock = repo / "requirements.lock"
    version = next(line.split("==")[1].split()[0] for line in lock.read_text().splitlines() if line.startswith("django=="))
    lock.write_text(lock.read_text().replace(f"django=={version}", "django==9.9.9"))
    two = rel.Release("v", b"", release_artifact.requirements(repo, names_))
    assert one.venv != two.venv and one.venv.startswith(rel.VENVS + "/")
    # A new pin is a new release, even with no code change.
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "bump django")
    assert rel.release_of(repo).version != before


def test_ship_and_switch_scripts_work_on_a_scratch_root(repo, tmp_path, monkeypatch):
    """The shell the steps build, run for real under a scratch ROOT."""
    root = tmp_path / "opt"
    for name, value in {"ROOT": str(root), "RELEASES": f"{root}/releases", "VENVS": f"{root}/venvs",
                        "CURRENT": f"{root}/current"}.items():
        monkeypatch.setattr(rel, name, value)
    release = rel.release_of(repo)

    def sh(script: str) -> int:
        return subprocess.run(["bash", "-c", script]).returncode

    assert sh(rel.shipped(release)) != 0
    for n in range(2):
        (root / "releases" / f"older{n}").mkdir(parents=True)
    assert sh(rel.pruned(2, release)) != 0  # two there and the one about to ship: a prune is due
    assert sh(rel.ship_script(release)) == 0 and sh(rel.shipped(release)) == 0
    assert (Path(release.path) / "app" / "views.py").read_text() == "from infra.config import X\nprint('v1', X)\n"
    assert (Path(release.path) / ".release").read_text().strip() == release.version
    assert sh(rel.switch_script("no-such-version")) != 0
    assert sh(rel.switch_script(release.version)) == 0 and sh(rel.switched(release.version)) == 0
    for n in range(4):  # older releases, then prune to 2: the current one always stays
        (root / "releases" / f"old{n}").mkdir()
    assert sh(rel.prune_script(2)) == 0 and sh(rel.pruned(2, release)) == 0
    assert (Path(release.path) / ".release").exists()


def test_a_host_converges_to_the_built_artifact_without_git(repo, tmp_path, monkeypatch):
    """A host has no checkout and no git: the release it converges to is the artifact built once
    with the bundle, the same version and bytes as the operator's build, so neither re-ships."""
    operator = rel.release_of(repo)
    directory = release_artifact.built(repo)
    assert directory == repo / release_artifact.BUILD_DIR / operator.version
    assert release_artifact.built(repo) == directory  # the same version is not written again
    monkeypatch.setenv(rel.ARTIFACT_ENV, str(directory))
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    on_host = rel.current_release()
    assert on_host == operator
    with pytest.raises(FileNotFoundError):  # and building from a tree would have needed git
        rel.release_of(repo)
