"""A local SSM Parameter Store (GetParameter/PutParameter, JSON 1.1 protocol) that enforces an
instance profile's `ssm:GetParameter` resources, the way IAM does for a host.

A read outside the allowed ARNs answers `AccessDeniedException`, as AWS does, so a role that
renders from a record or secret its profile lacks fails the test the way the host's boot fails.
"""

from __future__ import annotations

import json

from tests.fakes.base import JsonHandler, LocalServer

ACCOUNT = "123456789012"


class SsmHandler(JsonHandler):
    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        action = (self.headers.get("X-Amz-Target") or "").removeprefix("AmazonSSM.")
        request = json.loads(self.read_body() or b"{}")
        fake: SsmServer = self.fake
        name = request.get("Name", "")
        arn = fake.arn(name)
        if action == "GetParameter":
            with fake.lock:
                fake.reads.append(name)
            if fake.allowed is not None and arn not in fake.allowed:
                self._error("AccessDeniedException", f"not authorized to perform ssm:GetParameter on {arn}")
            elif name not in fake.parameters:
                self._error("ParameterNotFound", name)
            else:
                kind, value = fake.parameters[name]
                self.send_json(200, {"Parameter": {"Name": name, "Type": kind, "Value": value, "Version": 1, "ARN": arn}})
        elif action == "PutParameter":
            # Hosts never write (their profiles grant no PutParameter): any write is denied here.
            self._error("AccessDeniedException", f"not authorized to perform ssm:PutParameter on {arn}")
        else:
            self._error("InvalidAction", action)

    def _error(self, kind: str, message: str) -> None:
        self.send_json(400, {"__type": kind, "message": message})


class SsmServer(LocalServer):
    """Parameters by name (type, value); `allowed` the readable ARNs (None: all); `reads` every read."""

    handler = SsmHandler

    def __init__(self, region: str, parameters: dict[str, tuple[str, str]]):
        super().__init__()
        self.region = region
        self.parameters = parameters
        self.allowed: set[str] | None = None
        self.reads: list[str] = []

    def arn(self, name: str) -> str:
        return f"arn:aws:ssm:{self.region}:{ACCOUNT}:parameter{name}"
