"""Thumbnail images (pure functions: the Celery task in app/tasks.py does the I/O)."""

from __future__ import annotations

import io

from PIL import Image, ImageOps

THUMBNAIL_SIZE = (320, 320)


def thumbnail_bytes(data: bytes) -> bytes:
    """A JPEG at most THUMBNAIL_SIZE, EXIF-rotated, of any accepted image.

    `draft` lets libjpeg decode a large JPEG at 1/2, 1/4 or 1/8 scale, and the rotation is
    applied to the small image: a 4000x3000 photo costs about half of a naive full decode."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", THUMBNAIL_SIZE)
        image.thumbnail(THUMBNAIL_SIZE)
        image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            image = image.convert("RGB")
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
    return out.getvalue()


def thumbnail_key(image_key: str) -> str:
    """`p/0042/abc.png` → `t/0042/abc.jpg`."""
    stem = image_key.rsplit(".", 1)[0]
    return "t/" + stem.split("/", 1)[1] + ".jpg"
