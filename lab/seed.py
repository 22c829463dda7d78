"""The lab's AWS state, taken from the plan: what `pulumi up` would have created, created in moto.

`from_plan` (run by `lab.fleet`, where the plan is) turns the plan into a JSON-able seed;
`apply` (run inside the lab's AWS process, against its own moto) creates it through the AWS APIs:
the VPC and subnets (tagged), IAM roles with their policy documents and instance profiles, SSM
parameters, S3 buckets (tagged), the launch templates (tagged: `ops replace-node` launches from
them), the instances with their tags, planned addresses and rendered user_data, the EBS volumes
attached to them (an instance's tag naming its volume gets the volume's new id), and the load
balancer's target groups with the instances the plan attaches to them.
The Pulumi engine would decrypt the stack's secrets; the lab has none to decrypt, so it generates
the service passwords (random, never written to disk or printed) in their place.
"""

from __future__ import annotations

import os
import secrets
import zipfile
from pathlib import Path
from typing import Any

import pulumi

from infra.config import GENERATED_SECRETS
from infra.offline_plan import Plan, reveal
from infra.storage import build_wheelhouse, bundle_archive
from lab.planned_instances import LabPlan

MOCK_ARN_PREFIX = "arn:aws:mock:"
BUCKET = "aws:s3/bucket:Bucket"
VOLUME = "aws:ebs/volume:Volume"
VOLUME_ATTACHMENT = "aws:ec2/volumeAttachment:VolumeAttachment"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
TARGET_ATTACHMENT = "aws:lb/targetGroupAttachment:TargetGroupAttachment"


def _resource_id(value: str) -> str:
    """The plan's mock ids are `<resource name>-id`."""
    return value.removesuffix("-id")


def _arn_translation(plan: Plan) -> dict[str, str]:
    """The mocks' invented ARNs → the ARNs the seeded resources have (longest first)."""
    found = {}
    for resource in plan.of_type(BUCKET):
        found[resource.outputs["arn"]] = f"arn:aws:s3:::{resource.outputs['bucket']}"
    return dict(sorted(found.items(), key=lambda item: -len(item[0])))


def zip_archive(archive: pulumi.AssetArchive, out: Path) -> None:
    """Write a Pulumi asset archive as the zip the engine uploads (bytecode caches left out)."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, asset in sorted(archive.assets.items()):
            if isinstance(asset, pulumi.FileAsset):
                bundle.write(asset.path, name)
                continue
            if isinstance(asset, pulumi.StringAsset):
                bundle.writestr(name, asset.text)
                continue
            if not Path(asset.path).is_dir():  # os.walk would add nothing, silently
                raise FileNotFoundError(f"the bundle's {name}/ is not there: {asset.path}")
            for directory, subdirs, files in os.walk(asset.path):
                subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
                for file in sorted(files):
                    path = Path(directory, file)
                    # A wheel is a zip already: stored as it is, not compressed a second time.
                    bundle.write(path, f"{name}/{path.relative_to(asset.path).as_posix()}",
                                 zipfile.ZIP_STORED if path.suffix == ".whl" else None)


def _objects(plan: Plan, workdir: Path) -> list[dict[str, str]]:
    """The bucket objects the program uploads (the release bundle), written out as the engine would."""
    buckets = {f"{r.name}-id": r.outputs["bucket"] for r in plan.of_type(BUCKET)}
    found = []
    build_wheelhouse()  # as the program does before the engine uploads the bundle (cached: `up` built it)
    for resource in plan.of_type("aws:s3/bucketObjectv2:BucketObjectv2"):
        path = workdir / f"{resource.name}.zip"
        zip_archive(bundle_archive(plan.stack), path)
        found.append({"bucket": buckets[resource.inputs["bucket"]], "key": resource.inputs["key"], "path": str(path)})
    return found


def from_plan(lab: LabPlan, workdir: Path) -> dict[str, Any]:
    """Everything `apply` creates, read from the plan (files it uploads are written to `workdir`)."""
    plan = lab.plan
    # As the one-box generates them; the dashboards' password login too (a user sets it on AWS).
    generated = {name: secrets.token_urlsafe(32) for name in (*GENERATED_SECRETS, "dashboardPassword")}
    parameters = []
    for resource in plan.of_type("aws:ssm/parameter:Parameter"):
        inputs = reveal(resource.inputs)
        secret_name = inputs["name"].rsplit("/", 1)[-1]
        value = inputs["value"] if "value" in inputs else inputs["insecureValue"]  # records are not secret
        if inputs["type"] == "SecureString":
            value = generated.get(secret_name, value)
        parameters.append({"Name": inputs["name"], "Value": value, "Type": inputs["type"]})
    templates = {r.name: reveal(r.inputs) for r in plan.of_type("aws:ec2/launchTemplate:LaunchTemplate")}
    instances = []
    resources = {r.name: r for r in plan.of_type("aws:ec2/instance:Instance")}
    node_of = {f"{name}-id": (reveal(r.inputs).get("tags") or {}).get("photostack:node", name) for name, r in resources.items()}
    for instance in lab.instances:
        inputs = reveal(resources[instance.resource].inputs)
        template = templates[_resource_id(inputs["launchTemplate"]["id"])]
        profile = (template.get("iamInstanceProfile") or {}).get("arn", "")
        instances.append({
            "node": instance.node, "subnet": _resource_id(inputs["subnetId"]), "private_ip": instance.private_ip,
            "public_ip": instance.public_ip, "user_data": instance.user_data, "tags": instance.tags,
            "image_id": template["imageId"], "instance_type": template["instanceType"],
            "profile": profile.rsplit("/", 1)[-1] if profile else None,
        })
    volumes = [{"planned_id": f"{r.name}-id", "az": r.inputs["availabilityZone"], "size": int(r.inputs["size"]),
                "type": r.inputs["type"], "encrypted": bool(r.inputs.get("encrypted")), "tags": reveal(r.inputs)["tags"]}
               for r in plan.of_type(VOLUME)]
    attachments = [{"planned_volume": r.inputs["volumeId"], "node": node_of[r.inputs["instanceId"]],
                    "device": r.inputs["deviceName"]} for r in plan.of_type(VOLUME_ATTACHMENT)]
    target_attachments = [reveal(r.inputs) for r in plan.of_type(TARGET_ATTACHMENT)]
    return {
        "vpc_cidr": str(lab.network),
        "subnets": [{"name": r.name, "cidr": r.inputs["cidrBlock"], "az": r.inputs["availabilityZone"],
                     "tags": reveal(r.inputs).get("tags") or {}} for r in plan.of_type("aws:ec2/subnet:Subnet")],
        "roles": [{"name": r.name, "assume": reveal(r.inputs)["assumeRolePolicy"]} for r in plan.of_type("aws:iam/role:Role")],
        "role_policies": [{"role": _resource_id(reveal(r.inputs)["role"]), "name": r.name, "policy": reveal(r.inputs)["policy"]}
                          for r in plan.of_type("aws:iam/rolePolicy:RolePolicy")],
        "profiles": [{"name": r.name, "role": reveal(r.inputs)["role"]} for r in plan.of_type("aws:iam/instanceProfile:InstanceProfile")],
        "parameters": parameters,
        "buckets": [r.outputs["bucket"] for r in plan.of_type(BUCKET)],
        "bucket_tags": {r.outputs["bucket"]: reveal(r.inputs).get("tags") or {} for r in plan.of_type(BUCKET)},
        "launch_templates": [{
            "name": name, "tags": template.get("tags") or {}, "image_id": template["imageId"],
            "instance_type": template["instanceType"],
            "profile": ((template.get("iamInstanceProfile") or {}).get("arn") or "").rsplit("/", 1)[-1] or None,
        } for name, template in templates.items()],
        "target_groups": [{
            "name": r.name, "port": int(reveal(r.inputs)["port"]), "protocol": reveal(r.inputs)["protocol"],
            "tags": reveal(r.inputs).get("tags") or {},
            "members": [{"node": node_of[a["targetId"]], "port": int(a.get("port", reveal(r.inputs)["port"]))}
                        for a in target_attachments if a["targetGroupArn"] == r.outputs["arn"]],
        } for r in plan.of_type(TARGET_GROUP)],
        "objects": _objects(plan, workdir),
        "instances": instances,
        "volumes": volumes,
        "attachments": attachments,
        "translate": _arn_translation(plan),
    }


def apply(seed: dict[str, Any], clients: Any, region: str) -> dict[str, str]:
    """Create the seed in the lab's AWS; returns node → instance id. `clients(service)` gives a
    boto3 client of the lab's AWS as the operator."""
    ec2, iam, ssm, s3 = (clients(s) for s in ("ec2", "iam", "ssm", "s3"))
    elbv2 = clients("elbv2")
    vpc = ec2.create_vpc(CidrBlock=seed["vpc_cidr"])["Vpc"]["VpcId"]
    subnets = {s["name"]: ec2.create_subnet(VpcId=vpc, CidrBlock=s["cidr"], AvailabilityZone=s["az"],
                                            TagSpecifications=_tagged("subnet", s.get("tags")))["Subnet"]["SubnetId"]
               for s in seed["subnets"]}
    for role in seed["roles"]:
        iam.create_role(RoleName=role["name"], AssumeRolePolicyDocument=role["assume"])
    for policy in seed["role_policies"]:
        iam.put_role_policy(RoleName=policy["role"], PolicyName=policy["name"], PolicyDocument=policy["policy"])
    for profile in seed["profiles"]:
        iam.create_instance_profile(InstanceProfileName=profile["name"])
        iam.add_role_to_instance_profile(InstanceProfileName=profile["name"], RoleName=profile["role"])
    for parameter in seed["parameters"]:
        ssm.put_parameter(**parameter)
    for bucket in seed["buckets"]:
        s3.create_bucket(Bucket=bucket)
        if seed.get("bucket_tags", {}).get(bucket):
            s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": _tag_list(seed["bucket_tags"][bucket])})
    for template in seed.get("launch_templates", []):
        data = {"ImageId": template["image_id"], "InstanceType": template["instance_type"],
                "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"}}
        if template["profile"]:
            data["IamInstanceProfile"] = {"Name": template["profile"]}
        ec2.create_launch_template(LaunchTemplateName=template["name"], LaunchTemplateData=data,
                                   TagSpecifications=_tagged("launch-template", template["tags"]))
    for item in seed["objects"]:
        s3.upload_file(item["path"], item["bucket"], item["key"])
    volume_ids = {}
    for volume in seed["volumes"]:
        tags = [{"Key": k, "Value": v} for k, v in volume["tags"].items()]
        volume_ids[volume["planned_id"]] = ec2.create_volume(
            AvailabilityZone=volume["az"], Size=volume["size"], VolumeType=volume["type"], Encrypted=volume["encrypted"],
            TagSpecifications=[{"ResourceType": "volume", "Tags": tags}])["VolumeId"]
    ids = {}
    for instance in seed["instances"]:
        extra = {"IamInstanceProfile": {"Name": instance["profile"]}} if instance["profile"] else {}
        if instance["user_data"]:
            extra["UserData"] = instance["user_data"]
        launched = ec2.run_instances(
            ImageId=instance["image_id"], InstanceType=instance["instance_type"], MinCount=1, MaxCount=1,
            SubnetId=subnets[instance["subnet"]], PrivateIpAddress=instance["private_ip"],
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
            TagSpecifications=[{"ResourceType": "instance",
                                "Tags": [{"Key": k, "Value": volume_ids.get(v, v)} for k, v in instance["tags"].items()]}],
            **extra)
        ids[instance["node"]] = launched["Instances"][0]["InstanceId"]
    for attachment in seed["attachments"]:
        ec2.attach_volume(VolumeId=volume_ids[attachment["planned_volume"]], InstanceId=ids[attachment["node"]],
                          Device=attachment["device"])
    for group in seed.get("target_groups", []):
        arn = elbv2.create_target_group(Name=group["name"], Protocol=group["protocol"], Port=group["port"], VpcId=vpc,
                                        TargetType="instance", Tags=_tag_list(group["tags"]))["TargetGroups"][0]["TargetGroupArn"]
        if group["members"]:
            elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": ids[m["node"]], "Port": m["port"]}
                                                                 for m in group["members"]])
    return ids


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def _tagged(resource_type: str, tags: dict[str, str] | None) -> list[dict[str, Any]]:
    """TagSpecifications for a create call (none when there are no tags)."""
    return [{"ResourceType": resource_type, "Tags": _tag_list(tags)}] if tags else []
