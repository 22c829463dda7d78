"""Bad uploads get a clear 4xx and leave nothing behind: no row on any shard, no file."""

from __future__ import annotations

import io

import psycopg
import pytest
from PIL import Image

from tests.app_helpers import jpeg, post_photo, signed_up
from tests.app_services import PHYSICAL_SHARDS


def media_files(stack) -> set[str]:
    return {str(p.relative_to(stack.media_root)) for p in stack.media_root.rglob("*") if p.is_file()}


def photo_rows(stack, user_id: int) -> int:
    total = 0
    for n in range(PHYSICAL_SHARDS):
        with psycopg.connect(stack.direct_dsn(f"shard{n}")) as conn:
            schemas = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'shard_%'")]
            for schema in schemas:
                total += conn.execute(f"SELECT count(*) FROM {schema}.photos WHERE user_id = %s", (user_id,)).fetchone()[0]
    return total


def bmp() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "BMP")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"", 400, "empty"),
        (b"this is not an image at all", 400, "not a readable image"),
        (jpeg()[:40], 400, "not a readable image"),  # a truncated JPEG header
        (bmp(), 400, "not accepted"),
        (b"\xff\xd8" + b"x" * (300 * 1024), 413, "larger"),  # over PHOTOSTACK_MAX_UPLOAD_BYTES (256 KiB)
    ],
    ids=["empty", "text", "truncated", "bmp", "too-large"],
)
def test_bad_upload_is_4xx_and_leaves_nothing(app_stack, data, status, words):
    client, user = signed_up("uploader")
    files_before = media_files(app_stack)
    response = post_photo(client, data)
    assert response.status_code == status
    assert words in response.json()["error"]
    assert media_files(app_stack) == files_before
    assert photo_rows(app_stack, int(user["id"])) == 0


def test_upload_without_image_field_and_without_login(app_stack):
    from django.test import Client

    client, user = signed_up("nofield")
    response = client.post("/api/photos", {"caption": "no image"})
    assert response.status_code == 400 and "image" in response.json()["error"]
    assert post_photo(Client()).status_code == 401
    assert photo_rows(app_stack, int(user["id"])) == 0


def test_html_upload_of_a_non_image_is_400(app_stack):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client, user = signed_up("htmlup")
    files_before = media_files(app_stack)
    response = client.post("/upload/", {"image": SimpleUploadedFile("x.jpg", b"nope"), "caption": ""})
    assert response.status_code == 400 and b"not a readable image" in response.content
    assert media_files(app_stack) == files_before
    assert photo_rows(app_stack, int(user["id"])) == 0
