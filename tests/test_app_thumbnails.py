"""Thumbnails: bounded size, EXIF orientation applied, any accepted format in, JPEG out."""

from __future__ import annotations

import io

from PIL import Image

from app.thumbnails import thumbnail_bytes, thumbnail_key


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def test_large_jpeg_is_bounded_and_keeps_its_aspect():
    data = encoded(Image.new("RGB", (2000, 1000), "blue"), "JPEG")
    with Image.open(io.BytesIO(thumbnail_bytes(data))) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (320, 160)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    data = encoded(Image.new("RGB", (640, 320), "red"), "JPEG", exif=exif.tobytes())
    with Image.open(io.BytesIO(thumbnail_bytes(data))) as thumb:
        assert thumb.size == (160, 320)


def test_png_with_alpha_becomes_rgb_jpeg():
    data = encoded(Image.new("RGBA", (100, 50), (0, 255, 0, 128)), "PNG")
    with Image.open(io.BytesIO(thumbnail_bytes(data))) as thumb:
        assert thumb.format == "JPEG" and thumb.mode == "RGB" and thumb.size == (100, 50)


def test_thumbnail_key_sits_beside_the_original():
    assert thumbnail_key("p/0042/abc.png") == "t/0042/abc.jpg"
