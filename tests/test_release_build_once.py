"""The app release is built once per process, however many hosts' threads ask for it at once
(`ops status` and converges render hosts in parallel; on AWS `ops status` failed with CPython's
"AST constructor recursion depth mismatch" when several threads built it at the same time)."""

from __future__ import annotations

import threading
import time

from infra import release_artifact
from roles.app import release


def test_hosts_rendered_in_parallel_build_the_release_once(monkeypatch):
    builds: list[float] = []
    real_build = release_artifact.build

    def counted(repo):
        builds.append(time.monotonic())
        time.sleep(0.2)  # a build takes long enough for the other threads to ask meanwhile
        return real_build(repo)

    monkeypatch.setattr(release_artifact, "build", counted)
    release._built.cache_clear()
    try:
        got: list[release.Release] = []
        threads = [threading.Thread(target=lambda: got.append(release.build_release())) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert len(builds) == 1, f"built {len(builds)} times"
        assert len(got) == 6 and len({r.version for r in got}) == 1
    finally:
        release._built.cache_clear()
