"""Uploads (issue 10): a GPS-tagged, rotated JPEG is stored upright with no EXIF at all; a
truncated JPEG (a valid header, half the data) is refused rather than stored without a
thumbnail."""

from __future__ import annotations

import io

from PIL import Image

from tests.app_helpers import post_photo, signed_up

ORIENTATION, GPS_IFD, MAKE = 0x0112, 0x8825, 0x010F


def _camera_jpeg() -> bytes:
    """64x48, left half red, right half blue, stored sideways: EXIF orientation 6 (turn 90°
    clockwise to view) plus GPS and camera tags, as a phone writes them."""
    image = Image.new("RGB", (64, 48), "blue")
    image.paste("red", (0, 0, 32, 48))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[MAKE] = "PhoneMaker"
    gps = exif.get_ifd(GPS_IFD)
    gps.update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)})
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes(), quality=95)
    return out.getvalue()


def _stored(stack, image_url: str) -> bytes:
    return (stack.media_root / image_url.removeprefix("/media/")).read_bytes()


def test_stored_original_is_upright_and_has_no_gps_or_exif(app_stack):
    client, _ = signed_up("gps")
    upload = _camera_jpeg()
    assert Image.open(io.BytesIO(upload)).getexif().get_ifd(GPS_IFD)  # the test image does carry GPS
    response = post_photo(client, upload)
    assert response.status_code == 201, response.content
    photo = response.json()
    stored = _stored(app_stack, photo["image_url"])
    assert b"Exif" not in stored and b"PhoneMaker" not in stored
    with Image.open(io.BytesIO(stored)) as image:
        assert not image.getexif() and not image.getexif().get_ifd(GPS_IFD)
        assert image.size == (48, 64) and (photo["width"], photo["height"]) == (48, 64)
        top, bottom = image.convert("RGB").getpixel((24, 8)), image.convert("RGB").getpixel((24, 56))
    assert top[0] > 200 and top[2] < 60, top  # the red half is on top once turned clockwise
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_truncated_jpeg_is_refused(app_stack):
    client, _ = signed_up("truncated")
    whole = io.BytesIO()
    Image.effect_noise((200, 150), 64).convert("RGB").save(whole, "JPEG")
    half = whole.getvalue()[: len(whole.getvalue()) // 2]
    with Image.open(io.BytesIO(half)) as image:
        image.verify()  # the header check alone passes: only a full decode finds it
    response = post_photo(client, half)
    assert response.status_code == 400 and "not a readable image" in response.json()["error"]
