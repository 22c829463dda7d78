"""Shared fixtures: a test CA and the local protocol servers (PagerDuty, Pingdom, Sentry ingest and
Web API, moto for AWS)."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.pagerduty_server import PagerDutyServer
from tests.fakes.pingdom_server import PingdomServer
from tests.fakes.sentry_api_server import SentryApiServer
from tests.fakes.sentry_server import SentryServer
from tests.fakes.tls import CertificateFiles, make_certificates


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that uses the one-box requests the `onebox` fixture (so `ops up` ran, whatever ran
    before it) and carries the `onebox` marker (so `-m "not onebox"` never touches this machine).
    Tests marked `lab_replaces` go after the rest, and those marked `lab_teardown` last."""
    wrong = [item.nodeid for item in items
             if ("onebox" in item.fixturenames) != (item.get_closest_marker("onebox") is not None)]
    if wrong:
        raise pytest.UsageError("the onebox marker and the onebox fixture go together; not in:\n  " + "\n  ".join(wrong))
    # After pytest-randomly's shuffle (its hook wraps this one): a test that takes the session's
    # shared lab down runs last, so the shuffled tests before it share one boot (about 9 minutes);
    # one that replaces a lab host runs just before, so no other test finds the plan's address gone.
    items.sort(key=lambda item: (item.get_closest_marker("lab_teardown") is not None,
                                 item.get_closest_marker("lab_replaces") is not None))


@pytest.fixture(scope="session")
def test_certificates(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    """A CA bundle plus a 127.0.0.1 server certificate signed by it."""
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def pagerduty_server(test_certificates: CertificateFiles) -> Iterator[PagerDutyServer]:
    """The local HTTPS Events v2 endpoint; trust it with `test_certificates.ca_bundle`."""
    with PagerDutyServer(test_certificates.server_context()) as server:
        yield server


@pytest.fixture
def state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private PHOTOSTACK_STATE_DIR for the test."""
    root = tmp_path / "state"
    monkeypatch.setenv("PHOTOSTACK_STATE_DIR", str(root))
    return root


PINGDOM_TOKEN = "pingdom-test-token"


@pytest.fixture
def pingdom_server(test_certificates: CertificateFiles) -> Iterator[PingdomServer]:
    """The local HTTPS Pingdom 3.1 API; token `PINGDOM_TOKEN`, base URL `server.api_url`."""
    with PingdomServer(PINGDOM_TOKEN, test_certificates.server_context()) as server:
        yield server


@pytest.fixture
def sentry_server() -> Iterator[SentryServer]:
    """The local Sentry ingest endpoint; initialise the SDK with `server.dsn`."""
    with SentryServer() as server:
        yield server


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto server speaking the AWS APIs over real HTTP on loopback, one per test module, starting
    from an empty account (shared by the module's tests); point boto3 clients at it with `endpoint_url`."""
    from moto.server import ThreadedMotoServer  # 0.6 s to import: only modules using AWS pay it

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto keeps its accounts per process, not per server: without this a module would see the
    # instances an earlier module created.
    _moto_reset(endpoint)
    yield endpoint
    server.stop()


@pytest.fixture
def moto_account(moto_endpoint: str) -> str:
    """The module's moto server, emptied for this test; its endpoint URL."""
    _moto_reset(moto_endpoint)
    return moto_endpoint


def _moto_reset(endpoint: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")  # moto's own reset API
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


SENTRY_API_TOKEN = "sntrys_test-org-token"


@pytest.fixture
def sentry_api_server(test_certificates: CertificateFiles) -> Iterator[SentryApiServer]:
    """The local HTTPS Sentry Web API (releases, deploys): org `photostack`, project
    `photostack-onebox`, token `SENTRY_API_TOKEN`."""
    with SentryApiServer(SENTRY_API_TOKEN, test_certificates.server_context()) as server:
        yield server


@pytest.fixture(scope="session")
def onebox():
    """The one-box stack, brought up for real (`ops up`: sshd on loopback, every role converged)."""
    import subprocess
    import sys

    from ops.stack import Stack

    done = subprocess.run(
        [sys.executable, "-m", "ops", "up"], capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, f"ops up failed:\n{done.stdout}\n{done.stderr}"
    return Stack.load("onebox")


# --- app area: throwaway PostgreSQL/pgbouncer/Redis/Memcached/RabbitMQ + Celery worker ---
from tests.app_services import app_stack  # noqa: E402,F401  (session fixture)
