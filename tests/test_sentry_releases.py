"""`ops deploy` → a Sentry release and deploy through the Web API when the stack holds an auth
token, against a local HTTPS server speaking that part of the API; the info event without one."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sentry_sdk
import yaml

from infra.config import REPO_ROOT, Alerting, ConfigError, StackConfig, load_stack_config, parse_stack_config
from infra.secrets import SecretStore
from monitoring.integrations.sentry import AUTH_TOKEN_SECRET, CA_ENV, DSN_ENV, DSN_SECRET, init_sentry, mark_deploy_for_stack
from infra.alerts import project_slug
from monitoring.integrations.sentry_releases import SentryApiError, SentryReleases, api_url_from_dsn
from ops import day2, rollout
from ops.stack import Stack
from tests.conftest import SENTRY_API_TOKEN
from tests.test_config import _set, prod_document

RELEASE = "3f2a9c1"
RELEASES_PATH = "/api/0/organizations/photostack/releases/"
DEPLOYS_PATH = f"/api/0/organizations/photostack/releases/{RELEASE}/deploys/"


@pytest.fixture(autouse=True)
def _trust_the_test_ca(test_certificates, monkeypatch) -> None:
    monkeypatch.setenv(CA_ENV, str(test_certificates.ca_bundle))
    monkeypatch.delenv(DSN_ENV, raising=False)


@pytest.fixture
def events(sentry_server) -> Iterator[list]:
    """The SDK on, reporting to the local ingest endpoint: where the fallback event would land."""
    init_sentry(sentry_server.dsn, "onebox", None, default_integrations=False)
    try:
        yield sentry_server.events
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)  # inactive for the next test (init() with no DSN is still active)


def staging_document() -> dict:
    return yaml.safe_load((REPO_ROOT / "Pulumi.staging.yaml").read_text())


def _config(sentry_url: str | None = None) -> StackConfig:
    onebox = load_stack_config("onebox")
    return onebox.model_copy(update={"alerting": Alerting(sentry=True, sentry_url=sentry_url)})


def _secrets(server, token: str = SENTRY_API_TOKEN) -> dict[str, str]:
    """A self-hosted Sentry: the DSN's host serves the Web API too."""
    return {AUTH_TOKEN_SECRET: token, DSN_SECRET: f"https://publickey@127.0.0.1:{server.port}/1"}


def test_a_deploy_creates_the_release_then_records_the_deploy(sentry_api_server, sentry_server, events):
    warning = mark_deploy_for_stack(_config(), RELEASE, _secrets(sentry_api_server).get)
    sentry_sdk.flush(timeout=5)

    assert warning is None
    assert sentry_api_server.releases == {RELEASE: {"photostack-onebox"}}
    assert sentry_api_server.deploys == [(RELEASE, "onebox")]
    assert sentry_api_server.requests == [("POST", RELEASES_PATH), ("POST", DEPLOYS_PATH)]
    assert sentry_server.events == []  # a real deploy: no stand-in event


def test_an_existing_release_is_fine(sentry_api_server, test_certificates):
    client = SentryReleases(sentry_api_server.url, SENTRY_API_TOKEN, "photostack",
                            ca_bundle=str(test_certificates.ca_bundle))
    assert client.create_release(RELEASE, ["photostack-onebox"]) is True   # 201
    assert client.create_release(RELEASE, ["photostack-onebox"]) is False  # 208 Already Reported

    assert mark_deploy_for_stack(_config(), RELEASE, _secrets(sentry_api_server).get) is None
    assert sentry_api_server.deploys == [(RELEASE, "onebox")]


def test_a_rejected_token_is_one_line_naming_sentry_and_the_status(sentry_api_server, sentry_server, events):
    wrong = "sntrys_revoked-token-value"
    warning = mark_deploy_for_stack(_config(), RELEASE, _secrets(sentry_api_server, wrong).get)
    sentry_sdk.flush(timeout=5)

    assert warning is not None and "\n" not in warning
    assert warning == (f"Sentry POST {sentry_api_server.url}{RELEASES_PATH}: 401 Invalid token; "
                       "recorded the deploy as an event instead")
    assert wrong not in warning and SENTRY_API_TOKEN not in warning
    assert sentry_api_server.releases == {} and sentry_api_server.deploys == []
    [event] = sentry_server.events  # the deploy still leaves its trace in Sentry
    assert event["message"] == f"Deployed {RELEASE} to onebox" and event["tags"]["deploy"] == RELEASE


def test_a_5xx_is_retried_once(sentry_api_server):
    sentry_api_server.fail_next(503)
    assert mark_deploy_for_stack(_config(), RELEASE, _secrets(sentry_api_server).get, retry_wait_s=0.01) is None
    assert sentry_api_server.requests == [("POST", RELEASES_PATH)] * 2 + [("POST", DEPLOYS_PATH)]
    assert sentry_api_server.deploys == [(RELEASE, "onebox")]

    sentry_api_server.fail_next(502, times=2)
    warning = mark_deploy_for_stack(_config(), "next", _secrets(sentry_api_server).get, retry_wait_s=0.01)
    assert warning is not None and ": 502 Internal Error" in warning
    assert "next" not in sentry_api_server.releases


def test_a_429_waits_the_retry_after_it_asks_for(sentry_api_server, test_certificates):
    client = SentryReleases(sentry_api_server.url, SENTRY_API_TOKEN, "photostack", retry_wait_s=0.01,
                            max_wait_s=5, ca_bundle=str(test_certificates.ca_bundle))
    sentry_api_server.fail_next(429, retry_after="1")
    began = time.monotonic()
    assert client.create_release(RELEASE, ["photostack-onebox"]) is True
    assert time.monotonic() - began >= 1.0

    sentry_api_server.fail_next(429, retry_after="60")  # longer than we may wait: no retry
    with pytest.raises(SentryApiError) as error:
        client.create_release("later", ["photostack-onebox"])
    assert error.value.status == 429 and "Rate limit exceeded" in str(error.value)
    assert len(sentry_api_server.requests) == 3


def test_field_errors_and_unknown_releases_come_back_in_sentrys_words(sentry_api_server, test_certificates):
    client = SentryReleases(sentry_api_server.url, SENTRY_API_TOKEN, "photostack",
                            ca_bundle=str(test_certificates.ca_bundle))
    with pytest.raises(SentryApiError, match=r": 400 projects: Invalid project slugs$"):
        client.create_release(RELEASE, ["photostack-nowhere"])
    with pytest.raises(SentryApiError, match=r": 404 The requested resource does not exist$"):
        client.create_deploy("never-released", "onebox")


def test_an_unreachable_sentry_is_a_warning_not_a_failure(sentry_api_server):
    secrets = _secrets(sentry_api_server)
    sentry_api_server.stop()
    warning = mark_deploy_for_stack(_config(), RELEASE, secrets.get, retry_wait_s=0.01)
    assert warning is not None and "unreachable" in warning and warning.startswith("Sentry POST https://127.0.0.1:")


def test_without_a_token_the_deploy_is_the_info_event(sentry_api_server, sentry_server, events):
    secrets = {DSN_SECRET: f"https://publickey@127.0.0.1:{sentry_api_server.port}/1"}
    assert mark_deploy_for_stack(_config(), RELEASE, secrets.get) is None
    sentry_sdk.flush(timeout=5)

    [event] = sentry_server.events
    assert (event["release"], event["environment"]) == (RELEASE, "onebox")
    assert sentry_api_server.requests == []


def test_sentry_off_ignores_the_token(sentry_api_server):
    config = load_stack_config("onebox")
    assert not config.alerting.sentry
    assert mark_deploy_for_stack(config, RELEASE, _secrets(sentry_api_server).get) is None
    assert sentry_api_server.requests == []


def test_sentry_url_overrides_the_dsn(sentry_api_server):
    secrets = {AUTH_TOKEN_SECRET: SENTRY_API_TOKEN, DSN_SECRET: "https://publickey@127.0.0.1:9/1"}
    assert mark_deploy_for_stack(_config(sentry_api_server.url), RELEASE, secrets.get) is None
    assert sentry_api_server.deploys == [(RELEASE, "onebox")]


def test_ops_deploy_reads_the_token_from_the_stack_and_shows_the_warning(sentry_api_server, state_root, capsys):
    stack = Stack("onebox", _config())
    store = SecretStore.for_stack("onebox")
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.set(DSN_SECRET, _secrets(sentry_api_server)[DSN_SECRET])
    assert rollout.mark_in_sentry(stack, RELEASE) is None  # no token yet: the (inactive) event path
    assert sentry_api_server.requests == []

    store.set(AUTH_TOKEN_SECRET, "sntrys_not-this-one")
    stack = Stack("onebox", _config())  # secrets are read once per loaded stack
    warning = rollout.mark_in_sentry(stack, RELEASE)
    assert warning is not None and warning.endswith(": 401 Invalid token")  # SDK off: no stand-in event

    day2._deployed(rollout.DeployLog(version=RELEASE, warnings=[warning]), "deployed")
    out = capsys.readouterr().out
    assert f"warning: {warning}" in " ".join(out.split())
    assert "sntrys_not-this-one" not in out


def test_the_api_url_comes_from_the_dsn():
    assert api_url_from_dsn("https://k@sentry.example.com/42") == "https://sentry.example.com"
    assert api_url_from_dsn("http://k@10.0.0.5:9000/sentry/7") == "http://10.0.0.5:9000/sentry"
    assert api_url_from_dsn("https://k@o4507.ingest.sentry.io/451") == "https://sentry.io"
    assert api_url_from_dsn("https://k@o4507.ingest.de.sentry.io/451") == "https://de.sentry.io"


def test_the_aws_program_creates_that_project_and_keeps_the_token_for_ops_only():
    import json

    from infra.offline_plan import is_secret, placeholder_secret, reveal, run_plan

    document = _set(_set(staging_document(), "photostack:alerting", {"sentry": True}),
                    "photostack:sentryAuthToken", {"secure": "v1:abc"})
    plan = run_plan(parse_stack_config(document), "staging")

    [project] = plan.of_type("sentry:index/sentryProject:SentryProject")
    assert project.inputs["slug"] == project_slug("staging") == "photostack-staging"
    parameters = {r.inputs["name"]: r.inputs for r in plan.of_type("aws:ssm/parameter:Parameter")}
    token = parameters["/photostack/staging/sentryAuthToken"]["value"]
    assert is_secret(token) and reveal(token) == placeholder_secret("sentryAuthToken")
    policies = [json.loads(r.inputs["policy"]) for r in plan.of_type("aws:iam/rolePolicy:RolePolicy")]
    granted = [a for p in policies for s in p["Statement"] if s.get("Sid") == "Secrets" for a in s["Resource"]]
    assert granted and not any(a.endswith("/sentryAuthToken") for a in granted)


def test_the_auth_token_is_an_optional_secret():
    assert AUTH_TOKEN_SECRET not in load_stack_config("prod").secrets  # absent: still valid
    with_token = parse_stack_config(_set(prod_document(), "photostack:sentryAuthToken", {"secure": "v1:abc"}))
    assert "sentryAuthToken" in with_token.secrets
    with pytest.raises(ConfigError) as plain:
        parse_stack_config(_set(prod_document(), "photostack:sentryAuthToken", "sntrys_plain"))
    assert plain.value.problems == [
        "photostack:sentryAuthToken: is a secret; store it with `pulumi config set --secret sentryAuthToken`, "
        "not in plain text"]
    with pytest.raises(ConfigError) as bad_url:
        parse_stack_config(_set(prod_document(), "photostack:alerting", {"sentry": True, "sentryUrl": "sentry.example.com"}))
    assert bad_url.value.problems == ["photostack:alerting.sentryUrl: 'sentry.example.com' is not an http(s) URL"]
