"""The lab's AWS stand-in, in process on loopback: IMDSv2 answered per caller address with the
instance role's credentials, each call checked against that role's policy (Resource honoured,
AccessDenied as AWS answers it), and GetConsoleOutput carrying the host's real console."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.host_keys import console_host_keys
from lab.aws import Running, request_action, start
from lab.fleet import attached_volumes

REGION = "us-east-1"
PARAMETER = "/photostack/lab/dbPassword"
OTHER = "/photostack/lab/redisPassword"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheLabHostForTheTest"
POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["ssm:GetParameter"],
     "Resource": [f"arn:aws:ssm:{REGION}:123456789012:parameter{PARAMETER}"]},
    {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:mock:bucket/release/*"]},
]}


def _seed() -> dict:
    return {
        "vpc_cidr": "127.0.0.0/16",
        "subnets": [{"name": "net", "cidr": "127.0.0.0/24", "az": "us-east-1a"}],
        "roles": [{"name": "app-role", "assume": json.dumps({"Version": "2012-10-17", "Statement": []})}],
        "role_policies": [{"role": "app-role", "name": "app-policy", "policy": json.dumps(POLICY)}],
        "profiles": [{"name": "app-profile", "role": "app-role"}],
        "parameters": [{"Name": PARAMETER, "Value": "s3cret", "Type": "SecureString"},
                       {"Name": OTHER, "Value": "other", "Type": "SecureString"}],
        "buckets": ["release-bucket"],
        "objects": [],
        "launch_templates": [{"name": "app-template", "tags": {"photostack:role": "app"}, "image_id": "ami-12345678",
                              "instance_type": "t3.small", "profile": "app-profile"}],
        "instances": [{"node": "app-0", "subnet": "net", "private_ip": "127.0.0.1", "public_ip": None,
                       "user_data": "#!/bin/sh\necho hello\n",
                       "tags": {"photostack:node": "app-0", "photostack:data-volume": "app-0-data-id"},
                       "image_id": "ami-12345678", "instance_type": "t3.small", "profile": "app-profile"}],
        "volumes": [{"planned_id": "app-0-data-id", "az": "us-east-1a", "size": 1, "type": "gp3", "encrypted": True,
                     "tags": {"photostack:node": "app-0"}}],
        "attachments": [{"planned_volume": "app-0-data-id", "node": "app-0", "device": "/dev/sdf"}],
        "translate": {"arn:aws:mock:bucket": "arn:aws:s3:::release-bucket"},
    }


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, Path]]:
    consoles = tmp_path_factory.mktemp("consoles")
    (consoles / "app-0").mkdir()
    (consoles / "app-0" / "console.log").write_text(
        f"boot…\n-----BEGIN SSH HOST KEY KEYS-----\n{HOST_KEY} root@app-0\n-----END SSH HOST KEY KEYS-----\n")
    config = {"region": REGION, "address": "127.0.0.1", "api_port": 0, "metadata_port": 0,
              "secret_seed": "test-seed", "ssh_public_key": "ssh-ed25519 AAAAoperator",
              "consoles": str(consoles), "calls": str(consoles / "calls.jsonl"), "seed": _seed()}
    running = start(config)
    yield running, consoles / "calls.jsonl"
    running.stop()


def _metadata(running: Running, path: str, token: str | None) -> urllib.request.Request:
    headers = {"X-aws-ec2-metadata-token": token} if token else {}
    return urllib.request.Request(f"http://127.0.0.1:{running.metadata_port}/latest/{path}", headers=headers)


def _token(running: Running) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{running.metadata_port}/latest/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    return urllib.request.urlopen(request).read().decode()


def _instance_session(running: Running) -> boto3.session.Session:
    token = _token(running)
    role = urllib.request.urlopen(_metadata(running, "meta-data/iam/security-credentials/", token)).read().decode()
    creds = json.loads(urllib.request.urlopen(_metadata(running, f"meta-data/iam/security-credentials/{role}", token)).read())
    return boto3.session.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                 aws_session_token=creds["Token"], region_name=REGION)


def test_metadata_is_imdsv2_and_answers_for_the_caller(stand_in):
    running, _ = stand_in
    with pytest.raises(urllib.error.HTTPError) as unauthorised:
        urllib.request.urlopen(_metadata(running, "meta-data/instance-id", None))
    assert unauthorised.value.code == 401
    token = _token(running)
    assert urllib.request.urlopen(_metadata(running, "meta-data/instance-id", token)).read().decode() == running.ids["app-0"]
    assert urllib.request.urlopen(_metadata(running, "user-data", token)).read() == b"#!/bin/sh\necho hello\n"
    assert urllib.request.urlopen(_metadata(running, "meta-data/iam/security-credentials/", token)).read() == b"app-role"
    # pgBackRest asks for the role without the trailing slash; IMDS answers both.
    assert urllib.request.urlopen(_metadata(running, "meta-data/iam/security-credentials", token)).read() == b"app-role"


def test_virtual_hosted_s3_requests_take_the_bucket_from_the_host_name():
    """pgBackRest addresses S3 as `<bucket>.s3.<region>.amazonaws.com`; boto3 (path style) by path."""
    auth = {"HTTP_AUTHORIZATION": f"AWS4-HMAC-SHA256 Credential=ASIALABX/20261130/{REGION}/s3/aws4_request"}
    virtual = {**auth, "REQUEST_METHOD": "PUT", "PATH_INFO": "/pgbackrest/backup.info",
               "HTTP_HOST": f"backups.s3.{REGION}.amazonaws.com"}
    assert request_action(virtual, b"", REGION) == ("s3:PutObject", "arn:aws:s3:::backups/pgbackrest/backup.info")
    listing = {**auth, "REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_HOST": f"backups.s3.{REGION}.amazonaws.com"}
    assert request_action(listing, b"", REGION) == ("s3:ListBucket", "arn:aws:s3:::backups")
    path_style = {**auth, "REQUEST_METHOD": "GET", "PATH_INFO": "/media/p/1.jpg", "HTTP_HOST": "10.213.0.1:4566"}
    assert request_action({"HTTP_AUTHORIZATION": auth["HTTP_AUTHORIZATION"].replace("/s3/", "/ssm/"),
                           "HTTP_X_AMZ_TARGET": "AmazonSSM.GetParametersByPath"},
                          json.dumps({"Path": "/photostack/lab/silences/"}).encode(), REGION) == (
        "ssm:GetParametersByPath", f"arn:aws:ssm:{REGION}:123456789012:parameter/photostack/lab/silences")
    assert request_action(path_style, b"", REGION) == ("s3:GetObject", "arn:aws:s3:::media/p/1.jpg")


def test_instance_calls_are_checked_against_their_role_resource_by_resource(stand_in):
    running, calls = stand_in
    ssm = _instance_session(running).client("ssm", endpoint_url=f"http://127.0.0.1:{running.api_port}")
    assert ssm.get_parameter(Name=PARAMETER, WithDecryption=True)["Parameter"]["Value"] == "s3cret"
    with pytest.raises(ClientError) as denied:
        ssm.get_parameter(Name=OTHER, WithDecryption=True)
    error = denied.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert f"ssm:GetParameter on resource: arn:aws:ssm:{REGION}:123456789012:parameter{OTHER}" in error["Message"]
    s3 = _instance_session(running).client("s3", endpoint_url=f"http://127.0.0.1:{running.api_port}")
    with pytest.raises(ClientError) as denied_s3:
        s3.get_object(Bucket="release-bucket", Key="other/key")
    assert denied_s3.value.response["Error"]["Code"] == "AccessDenied"
    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    assert {(c["host"], c["action"], c["resource"].rsplit(":", 1)[-1], c["allowed"]) for c in recorded} >= {
        ("app-0", "ssm:GetParameter", f"parameter{PARAMETER}", True),
        ("app-0", "ssm:GetParameter", f"parameter{OTHER}", False),
    }


def test_console_output_is_the_hosts_own_console(stand_in):
    running, _ = stand_in
    ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{running.api_port}", region_name=REGION,
                       aws_access_key_id="operator", aws_secret_access_key="operator")
    output = ec2.get_console_output(InstanceId=running.ids["app-0"])["Output"]
    assert console_host_keys(output) == [HOST_KEY]


def test_the_planned_volume_is_attached_and_named_by_its_instance(stand_in):
    """The instance's tag names its volume by the id the seeded volume got (the plan's is a mock's)."""
    running, _ = stand_in
    ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{running.api_port}", region_name=REGION,
                       aws_access_key_id="operator", aws_secret_access_key="operator")
    (volume,) = ec2.describe_volumes(Filters=[{"Name": "tag:photostack:node", "Values": ["app-0"]}])["Volumes"]
    assert [(a["InstanceId"], a["Device"]) for a in volume["Attachments"]] == [(running.ids["app-0"], "/dev/sdf")]
    (reservation,) = ec2.describe_instances(InstanceIds=[running.ids["app-0"]])["Reservations"]
    tags = {t["Key"]: t["Value"] for t in reservation["Instances"][0]["Tags"]}
    assert tags["photostack:data-volume"] == volume["VolumeId"] and volume["VolumeId"].startswith("vol-")
    # What `up` gives the host a loop device for (the instance's root volume is its own disk).
    endpoint = f"http://127.0.0.1:{running.api_port}"
    assert attached_volumes(endpoint, REGION, running.ids) == {"app-0": (volume["VolumeId"], 1)}
def _metadata_from(running: Running, source: str, path: str) -> str:
    """An IMDSv2 answer asked from `source` (a loopback address: the caller the service answers for)."""
    def ask(method: str, url: str, headers: dict[str, str]) -> str:
        connection = http.client.HTTPConnection("127.0.0.1", running.metadata_port, source_address=(source, 0), timeout=5)
        connection.request(method, url, headers=headers)
        return connection.getresponse().read().decode()

    token = ask("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    return ask("GET", f"/latest/{path}", {"X-aws-ec2-metadata-token": token})


def test_a_launch_from_a_template_gets_its_profile_and_a_replacement_a_new_address(stand_in):
    """moto gives an instance launched from a launch template none of the template's instance
    profile; the lab's AWS gives it, as AWS does. A replacement comes up at a new address (moto
    does not hand out a terminated instance's again), so its peers must follow it there."""
    running, _ = stand_in
    ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{running.api_port}", region_name=REGION,
                       aws_access_key_id="operator", aws_secret_access_key="operator")
    subnet = ec2.describe_instances(InstanceIds=[running.ids["app-0"]])["Reservations"][0]["Instances"][0]["SubnetId"]
    (template,) = ec2.describe_launch_templates(Filters=[{"Name": "tag:photostack:role", "Values": ["app"]}])["LaunchTemplates"]

    def launch() -> dict:
        return ec2.run_instances(MinCount=1, MaxCount=1, SubnetId=subnet,
                                 LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"},
                                 )["Instances"][0]

    first = launch()
    assert _metadata_from(running, first["PrivateIpAddress"], "meta-data/iam/security-credentials/") == "app-role"
    ec2.terminate_instances(InstanceIds=[first["InstanceId"]])
    second = launch()
    assert second["PrivateIpAddress"] != first["PrivateIpAddress"]
    ec2.terminate_instances(InstanceIds=[second["InstanceId"]])
