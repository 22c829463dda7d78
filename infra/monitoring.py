"""Monitoring as code: a Pingdom uptime check of the public /health, through a Pulumi dynamic provider.

No maintained Pulumi provider for Pingdom exists, so `PingdomCheck` is a dynamic resource whose
provider calls the thin Pingdom 3.1 client (`infra/pingdom.py`). The provider is serialized
into the Pulumi state, so it imports the client inside its methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from infra.pingdom import check_name

PINGDOM_API = "https://api.pingdom.com/api/3.1"
# Properties whose change is an in-place update of the check (the name identifies it).
UPDATABLE = ("host", "path", "resolution", "integration_ids")


def _client(props: dict[str, Any]) -> Any:
    from infra.pingdom import PingdomClient

    return PingdomClient(props["token"], base_url=props["api_url"])


def _check(props: dict[str, Any]) -> dict[str, Any]:
    """`sync_check`'s arguments. The engine hands numbers back as floats: ids are made ints again."""
    check = {key: props[key] for key in ("name", "host", "path", "resolution")}
    return {**check, "integration_ids": tuple(int(i) for i in props.get("integration_ids") or ())}


def _normal(key: str, value: Any) -> Any:
    """A property as diffed: integration ids as a sorted list (none stored before they were a property)."""
    return sorted(int(i) for i in value or ()) if key == "integration_ids" else value


class PingdomCheckProvider(ResourceProvider):
    """Creates, updates and deletes one HTTP check by name through the Pingdom 3.1 API."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        result = _client(props).sync_check(**_check(props))
        return CreateResult(id_=str(result.check_id), outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [key for key in ("name", *UPDATABLE, "api_url", "token")
                   if _normal(key, olds.get(key)) != _normal(key, news.get(key))]
        return DiffResult(changes=bool(changed), replaces=["name"] if "name" in changed else [], delete_before_replace=True)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """The check as Pingdom has it now, so `pulumi refresh` sees a check edited or deleted by
        hand (a deleted one reads as gone: the next `up` creates it again)."""
        from infra.pingdom import PingdomError

        try:
            live = _client(props).check(int(id_))
        except PingdomError as exc:
            if exc.status == 404:
                return ReadResult(id_=None, outs={})
            raise
        http = live.get("type", {}).get("http", {})
        seen = {"name": live.get("name"), "host": live.get("hostname"), "path": http.get("url"),
                "resolution": live.get("resolution"), "integration_ids": sorted(live.get("integrationids") or [])}
        return ReadResult(id_=id_, outs={**props, **seen})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        _client(news).sync_check(**_check(news))
        return UpdateResult(outs=news)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        _client(props).delete_check_named(props["name"])


@dataclass(frozen=True)
class PingdomCheckArgs:
    """Inputs of the Pingdom check."""

    domain: str
    """Public DNS name of the site."""
    token: pulumi.Input[str]
    """Pingdom API token (a Pulumi secret)."""
    resolution: int = 1
    """Minutes between checks."""
    api_url: str = PINGDOM_API
    """Pingdom API base URL."""
    integration_ids: tuple[int, ...] = ()
    """Pingdom integrations the check alerts through (its PagerDuty integration)."""


class PingdomCheck(pulumi.dynamic.Resource):
    """An HTTPS check of https://<domain>/health from Pingdom's probes."""

    def __init__(self, name: str, args: PingdomCheckArgs, opts: pulumi.ResourceOptions | None = None):
        props = {
            "name": check_name(args.domain),
            "host": args.domain,
            "path": "/health",
            "resolution": args.resolution,
            "api_url": args.api_url,
            "integration_ids": sorted(args.integration_ids),
            "token": pulumi.Output.secret(args.token),
        }
        super().__init__(PingdomCheckProvider(), name, props, opts)


@dataclass(frozen=True)
class UptimeArgs:
    """Inputs of uptime monitoring."""

    domain: str
    """Public DNS name of the site."""
    pingdom_token: pulumi.Input[str]
    """Pingdom API token (a Pulumi secret)."""
    dns_record: pulumi.Resource | None = None
    """The site's DNS record: the check is created after it (before it, the first probes fail and page)."""
    pagerduty_integration_id: int | None = None
    """Pingdom's id of its PagerDuty integration: the check pages through it (None: it does not page)."""


class Uptime(pulumi.ComponentResource):
    """External uptime checks of the site (Pingdom)."""

    def __init__(self, name: str, args: UptimeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("photostack:monitoring:Uptime", name, None, opts)
        after = [args.dns_record] if args.dns_record is not None else []
        PingdomCheck(
            f"{name}-pingdom",
            PingdomCheckArgs(args.domain, args.pingdom_token, integration_ids=tuple(
                i for i in (args.pagerduty_integration_id,) if i is not None)),
            pulumi.ResourceOptions(parent=self, depends_on=after),
        )
        self.register_outputs({})
