"""The lab's AWS: moto on the lab bridge, plus what moto does not do the way AWS does.

One process (`python -m lab.aws SEED`) serves, on the lab gateway address:
- the AWS APIs (EC2, SSM, S3, ELBv2, IAM) — moto's server, seeded by `lab.fleet` from the plan;
- the instance metadata service (IMDSv2) on its own port, which the lab's iptables rule puts
  behind 169.254.169.254:80 for every host: token, instance id, AZ, user_data, the admin's SSH
  key and the instance role's credentials, all answered for the instance whose private address
  is the caller's (moto's own metadata answers are one static fake instance);
- EC2 GetConsoleOutput from the host's real console (moto returns a fixed text), which carries
  the SSH host keys cloud-init printed there;
- a policy check of every call made with an instance's credentials against its role's policy
  documents (Action and Resource, explicit Deny wins; moto ignores Resource), answering
  AccessDenied the way each AWS API does, and recording every call;
- hosts that follow the instances' states (lab/ec2_hosts.py): stopped, started, terminated and
  launched instances stop, boot, remove and create lab hosts; and the load balancer stand-in's
  members that follow target registration (lab/lb_targets.py).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import secrets
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable

from lab.ec2_hosts import HostLauncher, Reconciler, Seen
from lab.hosts import HostSpec
from lab.lb import backend_name
from lab.lb_targets import Follower, Target
from lab.policy import evaluate

ACCOUNT = "123456789012"  # moto's default account
TOKEN_TTL_MAX_S = 21600
CREDENTIALS_TTL_S = 6 * 3600
ACCESS_KEY_PREFIX = "ASIALAB"
VIRTUAL_HOSTED = re.compile(r"^(.+)\.s3[.-](?:[a-z0-9-]+\.)?amazonaws\.com(?::\d+)?$")

StartResponse = Callable[..., Any]


# --- what the stand-in knows about the instances ---------------------------------------------


def _ec2_backend(region: str) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[ACCOUNT][region]


def _iam_backend() -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[ACCOUNT]["global"]


def instance_by_address(region: str, address: str) -> Any | None:
    """The running moto instance whose private address is `address`."""
    for reservation in _ec2_backend(region).reservations.values():
        for instance in reservation.instances:
            if instance.private_ip == address and instance.state == "running":
                return instance
    return None


def instance_by_id(region: str, instance_id: str) -> Any | None:
    for reservation in _ec2_backend(region).reservations.values():
        for instance in reservation.instances:
            if instance.id == instance_id:
                return instance
    return None


def seen_instances(region: str) -> list[Seen]:
    """Every instance of the region as the host reconciler reads it."""
    return [Seen(i.id, node_of(i), i.state, i.private_ip or "", data_volume(region, i))
            for r in list(_ec2_backend(region).reservations.values()) for i in list(r.instances)]


def data_volume(region: str, instance: Any) -> tuple[str, int] | None:
    """(id, size in GiB) of the EBS volume attached to `instance` besides its root volume (which is
    its host's own disk), or None."""
    for device, block in list(instance.block_device_mapping.items()):
        if device != instance.root_device_name:
            return block.volume_id, _ec2_backend(region).get_volume(block.volume_id).size
    return None


def registered_targets(region: str) -> dict[str, list[Target]]:
    """HAProxy backend → the targets registered in its target group (terminated instances left out)."""
    from moto.elbv2.models import elbv2_backends

    found = {}
    for group in list(elbv2_backends[ACCOUNT][region].target_groups.values()):
        instances = [(instance_by_id(region, target_id), target["Port"]) for target_id, target in list(group.targets.items())]
        found[backend_name(group.name)] = [Target(node_of(i), i.private_ip, int(port)) for i, port in instances
                                           if i is not None and i.state != "terminated"]
    return found


def node_of(instance: Any) -> str:
    """The topology node an instance runs (its `photostack:node` tag), else its id."""
    tags = {tag["key"]: tag["value"] for tag in instance.get_tags()}
    return tags.get("photostack:node", instance.id)


def role_of(instance: Any) -> Any | None:
    """The IAM role of an instance's instance profile, or None."""
    profile = instance.iam_instance_profile  # as RunInstances got it: {"Name": ...} or {"Arn": ...}
    if not profile:
        return None
    name = profile.get("Name") or profile["Arn"].rsplit("/", 1)[-1]
    found = _iam_backend().get_instance_profile(name)
    return found.roles[0] if found.roles else None


def access_key(instance_id: str, secret_seed: str) -> tuple[str, str]:
    """The (access key id, secret key) handed to an instance: derived, so every answer agrees."""
    digest = hashlib.sha256(f"{secret_seed}:{instance_id}".encode()).hexdigest().upper()
    return ACCESS_KEY_PREFIX + digest[:13], digest[13:53]


class Calls:
    """Every AWS call made with an instance's credentials, as JSON lines (host, action, resource, verdict)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    def record(self, **fields: Any) -> None:
        with self.lock, self.path.open("a") as out:
            out.write(json.dumps(fields, sort_keys=True) + "\n")


# --- which action on which resource a request is ---------------------------------------------


def _query(body: bytes, environ: dict[str, Any]) -> dict[str, str]:
    params = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        params.update(urllib.parse.parse_qsl(body.decode()))
    return params


def _service(environ: dict[str, Any]) -> str:
    found = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
    return found.group(1) if found else ""


def request_action(environ: dict[str, Any], body: bytes, region: str) -> tuple[str, str] | None:
    """(IAM action, resource ARN) of an API request, for the services hosts call."""
    service = _service(environ)
    if service == "ssm":
        operation = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
        payload = json.loads(body or b"{}")
        # GetParametersByPath is checked against the path's ARN without its trailing slash.
        name = payload.get("Name") or (payload.get("Path") or "").rstrip("/") or (payload.get("Names") or [""])[0]
        return f"ssm:{operation}", f"arn:aws:ssm:{region}:{ACCOUNT}:parameter/{name.lstrip('/')}"
    if service == "s3":
        path = urllib.parse.unquote(environ.get("PATH_INFO", "/")).lstrip("/")
        virtual = VIRTUAL_HOSTED.match(environ.get("HTTP_HOST", ""))
        # Virtual-hosted style (the bucket in the host name, as pgBackRest asks) or path style (boto3).
        bucket, key = (virtual.group(1), path) if virtual else (path.partition("/")[0], path.partition("/")[2])
        method = environ["REQUEST_METHOD"]
        if not key:
            action = {"GET": "s3:ListBucket", "HEAD": "s3:ListBucket", "PUT": "s3:CreateBucket",
                      "DELETE": "s3:DeleteBucket"}.get(method, f"s3:{method.title()}Bucket")
            return action, f"arn:aws:s3:::{bucket}"
        verb = {"GET": "GetObject", "HEAD": "GetObject", "PUT": "PutObject", "POST": "PutObject",
                "DELETE": "DeleteObject"}[method]
        return f"s3:{verb}", f"arn:aws:s3:::{bucket}/{key}"
    params = _query(body, environ)
    if service in ("ec2", "elasticloadbalancing") and "Action" in params:
        prefix = "ec2" if service == "ec2" else "elasticloadbalancing"
        resource = params.get("TargetGroupArn", "*") if prefix == "elasticloadbalancing" else "*"
        return f"{prefix}:{params['Action']}", resource
    return None


def access_denied(service: str, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """The error response each AWS API gives for a denied call."""
    request_id = secrets.token_hex(16)
    if service == "ssm":
        body = json.dumps({"__type": "AccessDeniedException", "message": message}).encode()
        return "400 Bad Request", [("Content-Type", "application/x-amz-json-1.1")], body
    if service == "s3":
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>{message}</Message>'
               f"<RequestId>{request_id}</RequestId></Error>")
        return "403 Forbidden", [("Content-Type", "application/xml")], xml.encode()
    if service == "ec2":
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>UnauthorizedOperation</Code>'
               f"<Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>")
        return "403 Forbidden", [("Content-Type", "text/xml")], xml.encode()
    xml = (f'<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{message}</Message></Error>'
           f"<RequestId>{request_id}</RequestId></ErrorResponse>")
    return "403 Forbidden", [("Content-Type", "text/xml")], xml.encode()


# --- the API front: policy check and console output, then moto -------------------------------

STATE_CHANGES = ("RunInstances", "StartInstances", "StopInstances", "TerminateInstances")


class LabAws:
    """WSGI middleware in front of moto's server application."""

    def __init__(self, moto_app: Any, region: str, secret_seed: str, consoles: Path, calls: Calls,
                 translate: dict[str, str]) -> None:
        self.moto_app = moto_app
        self.reconciler: Reconciler | None = None  # set once seeded, when the lab has hosts
        self.region = region
        self.secret_seed = secret_seed
        self.consoles = consoles
        self.calls = calls
        self.translate = translate  # the plan's mock ARNs → the ARNs of the seeded resources

    def _caller(self, environ: dict[str, Any]) -> Any | None:
        found = re.search(r"Credential=(" + ACCESS_KEY_PREFIX + r"\w+)/", environ.get("HTTP_AUTHORIZATION", ""))
        if not found:
            return None  # the operator (ops), not an instance
        for reservation in _ec2_backend(self.region).reservations.values():
            for instance in reservation.instances:
                if access_key(instance.id, self.secret_seed)[0] == found.group(1):
                    return instance
        return None

    def _policies(self, role: Any) -> list[dict[str, Any]]:
        documents = []
        for document in role.policies.values():
            text = document if isinstance(document, str) else json.dumps(document)
            for mock, real in self.translate.items():
                text = text.replace(mock, real)
            documents.append(json.loads(text))
        return documents

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        caller = self._caller(environ)
        if caller is not None:
            denied = self._check(caller, environ, body)
            if denied:
                status, headers, payload = denied
                start_response(status, headers + [("Content-Length", str(len(payload)))])
                return [payload]
        params = _query(body, environ) if _service(environ) == "ec2" else {}
        if params.get("Action") == "GetConsoleOutput":
            payload = self._console_output(params.get("InstanceId", ""))
            start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(payload)))])
            return [payload]
        reconciler = self.reconciler if params.get("Action") in STATE_CHANGES else None
        if reconciler and params["Action"] == "StopInstances" and params.get("Force", "").lower() == "true":
            reconciler.force([v for k, v in params.items() if k.startswith("InstanceId.")])
        answer = self.moto_app(environ, start_response)
        if params.get("Action") == "RunInstances":
            self._profiles_from_templates()
        if reconciler:
            reconciler.wake()  # moto changed the state as it answered: the hosts follow now
        return answer

    def _profiles_from_templates(self) -> None:
        """Launched from a launch template, an instance has the template's instance profile (moto
        gives it none): set before its host asks the metadata service for credentials."""
        for reservation in list(_ec2_backend(self.region).reservations.values()):
            for instance in reservation.instances:
                tags = {tag["key"]: tag["value"] for tag in instance.get_tags()}
                if instance.iam_instance_profile or "aws:ec2launchtemplate:id" not in tags:
                    continue
                backend = _ec2_backend(self.region)
                template = backend._get_template_from_args({"LaunchTemplateId": tags["aws:ec2launchtemplate:id"],
                                                            "Version": tags["aws:ec2launchtemplate:version"]})
                profile = template.data.get("IamInstanceProfile") or {}
                if profile:  # as AssociateIamInstanceProfile would (DescribeInstances shows it too)
                    backend.associate_iam_instance_profile(instance_id=instance.id,
                                                           iam_instance_profile_name=profile.get("Name"),
                                                           iam_instance_profile_arn=profile.get("Arn"))

    def _check(self, caller: Any, environ: dict[str, Any], body: bytes) -> tuple[str, list, bytes] | None:
        found = request_action(environ, body, self.region)
        if found is None:
            return None
        action, resource = found
        role = role_of(caller)
        node = node_of(caller)
        decision = evaluate(self._policies(role), action, resource) if role else None
        allowed = bool(decision and decision.allowed)
        self.calls.record(host=node, instance=caller.id, action=action, resource=resource, allowed=allowed,
                          at=time.time())
        if allowed:
            return None
        role_name = role.name if role else "no-role"
        why = {"explicit deny": "with an explicit deny in an identity-based policy",
               "no identity-based policy allows": f"because no identity-based policy allows the {action} action"}
        reason = why[decision.reason] if decision else "because the instance has no role"
        message = (f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/{caller.id} is not authorized to "
                   f"perform: {action} on resource: {resource} {reason}")
        return access_denied(_service(environ), message)

    def _host_of(self, instance: Any) -> str | None:
        """The lab host of an instance: the one the reconciler booted for it (None until then: a
        replacement's name is its node's, whose console may still be the terminated host's), else
        its node's."""
        if self.reconciler is None:
            return node_of(instance)
        spec = self.reconciler.specs.get(instance.id)
        return spec.name if spec else None

    def _console_output(self, instance_id: str) -> bytes:
        instance = instance_by_id(self.region, instance_id)
        text = ""
        host = self._host_of(instance) if instance is not None else None
        if host is not None:
            path = self.consoles / host / "console.log"
            text = path.read_text(errors="replace") if path.is_file() else ""
        output = base64.b64encode(text.encode()).decode()
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<GetConsoleOutputResponse xmlns="http://ec2.amazonaws.com/'
                f'doc/2016-11-15/"><requestId>{secrets.token_hex(16)}</requestId><instanceId>{instance_id}'
                f"</instanceId><timestamp>{now}</timestamp><output>{output}</output></GetConsoleOutputResponse>").encode()


# --- instance metadata (IMDSv2) --------------------------------------------------------------


class Metadata(BaseHTTPRequestHandler):
    """IMDSv2, answered for the instance whose private address is the caller's."""

    region = "us-east-1"
    secret_seed = ""
    ssh_public_key = ""
    tokens: dict[str, tuple[str, float]] = {}

    def log_message(self, *_args: Any) -> None:  # the access log would be noise
        pass

    def _send(self, status: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:  # noqa: N802
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if self.path != "/latest/api/token" or not ttl.isdigit() or not 1 <= int(ttl) <= TOKEN_TTL_MAX_S:
            self._send(400, "")
            return
        token = secrets.token_urlsafe(32)
        self.tokens[token] = (self.client_address[0], time.monotonic() + int(ttl))
        self._send(200, token)

    def do_GET(self) -> None:  # noqa: N802
        caller = self.client_address[0]
        held = self.tokens.get(self.headers.get("X-aws-ec2-metadata-token", ""))
        if not held or held[0] != caller or held[1] < time.monotonic():
            self._send(401, "")  # IMDSv2 only (httpTokens: required in the plan)
            return
        instance = instance_by_address(self.region, caller)
        if instance is None:
            self._send(404, "")
            return
        answer = self._answer(instance, self.path.split("?", 1)[0])
        if answer is None:
            self._send(404, "")
        else:
            self._send(200, *answer)

    def _answer(self, instance: Any, path: str) -> tuple[str, str] | None:
        role = role_of(instance)
        meta = {
            "/latest/meta-data/instance-id": instance.id,
            "/latest/meta-data/instance-type": instance.instance_type,
            "/latest/meta-data/local-ipv4": instance.private_ip,
            "/latest/meta-data/placement/availability-zone": instance.placement,
            "/latest/meta-data/placement/region": self.region,
            "/latest/meta-data/public-keys/0/openssh-key": self.ssh_public_key,
            "/latest/meta-data/iam/security-credentials": role.name if role else None,
        }
        path = path.rstrip("/")  # IMDS answers a listing with or without its trailing slash
        if path in meta:
            return (meta[path], "text/plain") if meta[path] else None
        if path == "/latest/user-data":
            return (instance.user_data.decode(), "text/plain") if instance.user_data else None
        if path == "/latest/dynamic/instance-identity/document":
            return json.dumps({"instanceId": instance.id, "region": self.region, "accountId": ACCOUNT,
                               "availabilityZone": instance.placement, "privateIp": instance.private_ip}), "application/json"
        if role and path == f"/latest/meta-data/iam/security-credentials/{role.name}":
            key_id, secret = access_key(instance.id, self.secret_seed)
            expires = datetime.now(timezone.utc) + timedelta(seconds=CREDENTIALS_TTL_S)
            return json.dumps({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": key_id,
                               "SecretAccessKey": secret, "Token": "lab-session-" + instance.id,
                               "LastUpdated": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                               "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}), "application/json"
        return None


def _clients(endpoint: str, region: str) -> Callable[[str], Any]:
    import boto3

    session = boto3.session.Session(aws_access_key_id="lab-operator", aws_secret_access_key="lab-operator",
                                    region_name=region)
    return lambda service: session.client(service, endpoint_url=endpoint)


@dataclass
class Running:
    """The lab's AWS, started: its ports, the instance ids of the seeded nodes, and how to stop it."""

    api_port: int
    metadata_port: int
    ids: dict[str, str]
    servers: list[Any]

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()


def start(config: dict[str, Any]) -> Running:
    """Start the API front (over moto) and the metadata service on `config["address"]` (port 0:
    any free port), then seed moto from `config["seed"]`."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    from lab.seed import apply

    region = config["region"]
    handler = type("LabMetadata", (Metadata,), {"region": region, "secret_seed": config["secret_seed"],
                                                 "ssh_public_key": config["ssh_public_key"], "tokens": {}})
    metadata = ThreadingHTTPServer((config["address"], config["metadata_port"]), handler)
    app = LabAws(DomainDispatcherApplication(create_backend_app), region, config["secret_seed"],
                 Path(config["consoles"]), Calls(Path(config["calls"])), config["seed"]["translate"])
    api = make_server(config["address"], config["api_port"], app, threaded=True, request_handler=MotoRequestHandler)
    for server in (metadata, api):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ids = apply(config["seed"], _clients(f"http://{config['address']}:{api.server_port}", region), region)
    # moto picks random public addresses; the lab routes the planned ones (documentation range) to its bridge.
    for planned in config["seed"]["instances"]:
        if planned["public_ip"]:
            instance_by_id(region, ids[planned["node"]]).nics[0].public_ip = planned["public_ip"]
    if config.get("hosts"):  # the lab's hosts (lab/fleet.py boots the seeded ones itself)
        booted = {s["name"]: HostSpec(s["name"], s["address"], s["index"], tuple(s["extra_addresses"]))
                  for s in config["hosts"]["specs"]}
        app.reconciler = Reconciler(lambda: seen_instances(region), HostLauncher.from_config(config["hosts"]),
                                    {ids[node]: spec for node, spec in booted.items()},
                                    log=lambda line: print(line, file=sys.stderr, flush=True))
        app.reconciler.start()
        Follower(lambda: registered_targets(region), Path(config["hosts"]["lb_socket"]),
                 log=lambda line: print(line, file=sys.stderr, flush=True)).start()
    return Running(api.server_port, metadata.server_address[1], ids, [metadata, api])


def serve(config: dict[str, Any]) -> None:
    """Run the lab's AWS until killed (`lab.fleet` starts it in the lab's cgroup, the config on
    stdin), printing the instance ids as one JSON line once seeded (the lab waits for it)."""
    running = start(config)
    print(json.dumps(running.ids), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    serve(json.loads(sys.stdin.read()))
