"""The photo app end to end on the lab fleet, through its load balancer (root, under the lab lock).

Users reach the stack as they reach the ALB: HTTPS to the load balancer stand-in with the stack's
domain. Each step crosses hosts: nginx → the app host's gunicorn (pgbouncer → the shard primary
host, Redis, Memcached), the post's tasks through RabbitMQ to Celery on the worker host, photos
and thumbnails in the S3 stand-in, written with each host's own instance role.
"""

from __future__ import annotations

import json

import boto3
import pytest

from lab import hosts
from tests.e2e.conftest import jpeg, wait_until
from tests.lab_stack.conftest import STACK, operator_environment

pytestmark = pytest.mark.lab
THUMBNAIL_TIMEOUT_S = 90  # Celery on the worker host, on a loaded 2-core machine
MEDIA_URL = "/media/"  # app.env's PHOTOSTACK_MEDIA_URL: image URLs are it + the object key


def s3_calls(host: str, action: str, resource: str) -> list[dict]:
    """The AWS calls `host` made with its instance role (the lab's record of every call)."""
    log = hosts.host_dir("_aws") / "calls.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return [r for r in rows if (r["host"], r["action"], r["resource"]) == (host, action, resource)]


def test_sign_up_post_thumbnail_follow_feed_and_like(lab_client, lab_green, tmp_path):
    poster, follower = lab_client(), lab_client()
    poster_name, _ = poster.sign_up("lab_poster")
    follower.sign_up("lab_fan")
    status, body = follower.json("POST", f"/api/users/{poster_name}/follow")
    assert status == 200, body

    status, photo = poster.post_photo(jpeg(), "lab sunset")
    assert status == 201, photo
    photo_id = photo["id"]
    thumbnail = wait_until(lambda: poster.json("GET", f"/api/photos/{photo_id}")[1].get("thumbnail_url"),
                           timeout=THUMBNAIL_TIMEOUT_S)
    assert thumbnail, f"no thumbnail within {THUMBNAIL_TIMEOUT_S} s"

    # Both objects are in the media bucket of the S3 stand-in, the original put by the app host and
    # the thumbnail by the worker host, each allowed by its own instance role.
    env = operator_environment(tmp_path)
    session = boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                    aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_DEFAULT_REGION"])
    ssm = session.client("ssm", endpoint_url=env["AWS_ENDPOINT_URL"])
    s3 = session.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
    bucket = json.loads(ssm.get_parameter(Name=f"/photostack/{STACK}/media")["Parameter"]["Value"])["bucket"]
    original, thumb = (url.removeprefix(MEDIA_URL) for url in (photo["image_url"], thumbnail))
    assert s3.head_object(Bucket=bucket, Key=thumb)["ContentType"] == "image/jpeg"
    assert s3.head_object(Bucket=bucket, Key=original)["ContentLength"] > s3.head_object(Bucket=bucket, Key=thumb)["ContentLength"]
    app_hosts = [i.node for i in lab_green.plan.instances if i.role == "app"]
    worker_host = next(i.node for i in lab_green.plan.instances if i.role == "worker")
    # The original: put once, by whichever app host nginx sent the post to.
    assert [c["allowed"] for host in app_hosts
            for c in s3_calls(host, "s3:PutObject", f"arn:aws:s3:::{bucket}/{original}")] == [True]
    assert True in [c["allowed"] for c in s3_calls(worker_host, "s3:PutObject", f"arn:aws:s3:::{bucket}/{thumb}")]

    shown = wait_until(lambda: follower.feed_photo(photo_id), timeout=THUMBNAIL_TIMEOUT_S)
    assert shown and shown["username"] == poster_name and shown["caption"] == "lab sunset"

    status, liked = follower.json("POST", f"/api/photos/{photo_id}/like")
    assert status == 200 and liked["like_count"] == 1, liked
    assert poster.json("GET", f"/api/photos/{photo_id}")[1]["like_count"] == 1
