"""Photos, likes and comments: raw SQL on the owner's shard, hydrated records cached in Memcached.

A photo record (the dict `photo_records` returns) is what feeds and pages show. It is cached
under `photo:<id>` for CACHE_TTL_S and deleted whenever the row changes (like, unlike,
comment, thumbnail), so a stale count lives at most until the next change or the TTL.

A reader's refill can race a writer's delete (read the row before the update, set the cache
after the delete). Writers therefore delete twice, the second time REDELETE_AFTER_S later, and
a reader writes its refill only if it comes within REFILL_WITHIN_S of starting its read, so
the second delete always follows a racing refill: a stale count lives about a second, not the
TTL. A photo still waiting for its thumbnail is cached for PENDING_TTL_S only. A like or unlike
that changed nothing invalidates too: it may be the retry of one that was stored by a process
that died before its delete (a restart, or nginx retrying it on another server).
"""

from __future__ import annotations

import io
import json
import secrets
import time
from dataclasses import dataclass

from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from app import counters
from app.clients import REFILL_WITHIN_S, memcache_client
from app.errors import BadUpload
from app.shards import router
from app.storage import storage
from infra.sharding import schema_name

# Pillow format → (file extension, content type). Everything else is refused.
FORMATS = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png"), "GIF": ("gif", "image/gif"), "WEBP": ("webp", "image/webp")}
MAX_PIXELS = 40_000_000  # of all frames together
# Re-encoding: keep a JPEG's own quantization (no visible generation loss); WebP as good.
_SAVE_OPTIONS: dict[str, dict] = {"JPEG": {"quality": "keep", "subsampling": "keep"}, "WEBP": {"quality": 90}}
CACHE_TTL_S = 300
PENDING_TTL_S = 2
MAX_CAPTION = 2200
MAX_COMMENT = 1000
_COLUMNS = (
    "p.id, p.user_id, u.username, p.image_key, p.thumb_key, p.caption, p.width, p.height, "
    "p.like_count, p.comment_count, p.created_at"
)


@dataclass(frozen=True)
class CleanImage:
    """An accepted upload as it is stored: upright, re-encoded, no metadata."""

    data: bytes
    ext: str
    content_type: str
    width: int
    height: int


def clean_image(data: bytes, max_bytes: int) -> CleanImage:
    """The image to store for an upload, else BadUpload.

    Every frame is decoded in full, so a truncated or corrupt file is refused here rather than
    stored without a thumbnail. The EXIF orientation is applied to the pixels, then the image is
    re-encoded with no EXIF (GPS, camera), XMP or comment: originals are public by URL. Only the
    colour profile is kept."""
    if not data:
        raise BadUpload("the uploaded file is empty")
    if len(data) > max_bytes:
        raise BadUpload(f"the uploaded file is larger than {max_bytes} bytes", status=413)
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, (width, height), frames = image.format, image.size, getattr(image, "n_frames", 1)
            if fmt not in FORMATS:
                raise BadUpload(f"image format {fmt} is not accepted (JPEG, PNG, GIF, WEBP)")
            # Checked before decoding anything: the header alone says how much decoding costs.
            if width * height * frames > MAX_PIXELS or width < 1 or height < 1:
                raise BadUpload(f"image size {width}x{height} ({frames} frames) is out of range")
            for _ in ImageSequence.Iterator(image):
                image.load()
            image.seek(0)
            if frames == 1:
                # In place keeps the JPEG's quantization tables for quality="keep".
                ImageOps.exif_transpose(image, in_place=True)
            out = io.BytesIO()
            options = _SAVE_OPTIONS.get(fmt, {})
            image.save(out, fmt, save_all=frames > 1, exif=b"", comment=b"", xmp=b"",
                       icc_profile=image.info.get("icc_profile"), **options)
            width, height = image.size
    except BadUpload:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise BadUpload("the uploaded file is not a readable image") from None
    ext, content_type = FORMATS[fmt]
    return CleanImage(out.getvalue(), ext, content_type, width, height)


def _cache_key(photo_id: int) -> str:
    return f"photo:{photo_id}"


def _record(row) -> dict:
    return {
        "id": row[0], "user_id": row[1], "username": row[2], "image_key": row[3], "thumb_key": row[4],
        "caption": row[5], "width": row[6], "height": row[7], "like_count": row[8],
        "comment_count": row[9], "created_at": row[10].isoformat(),
    }


def create_photo(user_id: int, data: bytes, caption: str, max_bytes: int) -> dict:
    """Store an image and its row on the owner's shard; on any failure nothing is left behind.
    (Posting also queues its task: app.posting.)"""
    caption = (caption or "").strip()[:MAX_CAPTION]
    image = clean_image(data, max_bytes)
    r = router()
    logical = r.logical_of(user_id)
    schema = schema_name(logical)
    # A random key: URLs are unguessable, and the key is known before the row exists.
    key = f"p/{logical:04d}/{secrets.token_hex(16)}.{image.ext}"
    store = storage()
    store.save(key, image.data, image.content_type)
    try:
        with r.connection(r.shard_map.physical_of(logical)) as conn:
            row = conn.execute(
                f"WITH p AS (INSERT INTO {schema}.photos (user_id, image_key, caption, width, height) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING *) "
                f"SELECT {_COLUMNS} FROM p JOIN {schema}.users u ON u.id = p.user_id",
                (user_id, key, caption, image.width, image.height),
            ).fetchone()
        if row is None:
            raise LookupError(f"user {user_id} does not exist on {schema}")
    except BaseException:
        store.delete(key)
        raise
    return _record(row)


def delete_photo(photo_id: int) -> None:
    """Remove a photo that nobody has seen yet (its post failed): row, image, cached record."""
    with router().for_object(photo_id) as (conn, schema):
        row = conn.execute(f"DELETE FROM {schema}.photos WHERE id = %s RETURNING image_key, thumb_key",
                           (photo_id,)).fetchone()
    if row is not None:
        for key in filter(None, row):
            storage().delete(key)
    invalidate(photo_id)


def photo_records(photo_ids: list[int]) -> dict[int, dict]:
    """Records of many photos: Memcached first, then one query per physical shard for the misses."""
    if not photo_ids:
        return {}
    cache = memcache_client()
    found: dict[int, dict] = {}
    cached = cache.get_many([_cache_key(pid) for pid in photo_ids])
    for pid in photo_ids:
        value = cached.get(_cache_key(pid))
        if value is not None:
            found[pid] = json.loads(value)
    misses = [pid for pid in photo_ids if pid not in found]
    if misses:
        read_at = time.monotonic()
        fresh = _load_from_shards(misses)
        if time.monotonic() - read_at < REFILL_WITHIN_S:  # else a writer's second delete may have passed
            for ttl, records in ((CACHE_TTL_S, {p: r for p, r in fresh.items() if r["thumb_key"]}),
                                 (PENDING_TTL_S, {p: r for p, r in fresh.items() if not r["thumb_key"]})):
                if records:
                    cache.set_many({_cache_key(pid): json.dumps(rec) for pid, rec in records.items()}, expire=ttl)
        found.update(fresh)
    return found


def _load_from_shards(photo_ids: list[int]) -> dict[int, dict]:
    r = router()
    records: dict[int, dict] = {}
    for physical, ids in r.group_by_physical(photo_ids).items():
        by_schema: dict[str, list[int]] = {}
        for pid in ids:
            by_schema.setdefault(r.schema_of(pid), []).append(pid)
        parts, params = [], []
        for schema, schema_ids in by_schema.items():
            parts.append(
                f"SELECT {_COLUMNS} FROM {schema}.photos p JOIN {schema}.users u ON u.id = p.user_id "
                "WHERE p.id = ANY(%s::bigint[])"
            )
            params.append(schema_ids)
        with r.connection(physical) as conn:
            for row in conn.execute(" UNION ALL ".join(parts), params):
                records[row[0]] = _record(row)
    return records


def photo_record(photo_id: int) -> dict | None:
    """One photo's record (cached), or None."""
    return photo_records([photo_id]).get(photo_id)


def invalidate(photo_id: int) -> None:
    """Drop a photo's cached record after its row changed (now, and again a moment later)."""
    memcache_client().delete_twice(_cache_key(photo_id))


def user_photos(user_id: int, limit: int = 30) -> list[dict]:
    """A user's newest photos (from the shard: a user page must show a photo posted a moment ago)."""
    with router().for_object(user_id) as (conn, schema):
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM {schema}.photos p JOIN {schema}.users u ON u.id = p.user_id "
            "WHERE p.user_id = %s ORDER BY p.id DESC LIMIT %s",
            (user_id, limit),
        ).fetchall()
    return [_record(row) for row in rows]


def like(photo_id: int, user_id: int) -> int | None:
    """Record a like; the photo's exact like count after it, or None if there is no such photo.

    One statement, so one transaction on one shard: the insert is idempotent on (photo, user) and
    the count moves by exactly the rows inserted, under the photo row's lock."""
    with router().for_object(photo_id) as (conn, schema):
        row = conn.execute(
            f"WITH ins AS (INSERT INTO {schema}.likes (photo_id, user_id) "
            f"SELECT id, %(u)s FROM {schema}.photos WHERE id = %(p)s ON CONFLICT DO NOTHING RETURNING 1) "
            f"UPDATE {schema}.photos SET like_count = like_count + (SELECT count(*) FROM ins) "
            "WHERE id = %(p)s RETURNING like_count, (SELECT count(*) FROM ins)",
            {"p": photo_id, "u": user_id},
        ).fetchone()
    if row is None:
        return None
    invalidate(photo_id)
    if row[1]:
        counters.incr(counters.LIKES)
    return row[0]


def unlike(photo_id: int, user_id: int) -> int | None:
    """Remove a like; the exact like count after it, or None if there is no such photo."""
    with router().for_object(photo_id) as (conn, schema):
        row = conn.execute(
            f"WITH del AS (DELETE FROM {schema}.likes WHERE photo_id = %(p)s AND user_id = %(u)s RETURNING 1) "
            f"UPDATE {schema}.photos SET like_count = like_count - (SELECT count(*) FROM del) "
            "WHERE id = %(p)s RETURNING like_count, (SELECT count(*) FROM del)",
            {"p": photo_id, "u": user_id},
        ).fetchone()
    if row is None:
        return None
    invalidate(photo_id)
    return row[0]


def add_comment(photo_id: int, user_id: int, username: str, body: str) -> dict | None:
    """Add a comment on the photo's shard and bump its count; None if there is no such photo."""
    with router().for_object(photo_id) as (conn, schema):
        row = conn.execute(
            f"WITH ins AS (INSERT INTO {schema}.comments (photo_id, user_id, username, body) "
            f"SELECT id, %(u)s, %(n)s, %(b)s FROM {schema}.photos WHERE id = %(p)s "
            "RETURNING id, created_at), "
            f"upd AS (UPDATE {schema}.photos SET comment_count = comment_count + 1 "
            "WHERE id = %(p)s AND EXISTS (SELECT 1 FROM ins)) "
            "SELECT id, created_at FROM ins",
            {"p": photo_id, "u": user_id, "n": username, "b": body[:MAX_COMMENT]},
        ).fetchone()
    if row is None:
        return None
    invalidate(photo_id)
    counters.incr(counters.COMMENTS)
    return {"id": row[0], "photo_id": photo_id, "user_id": user_id, "username": username,
            "body": body[:MAX_COMMENT], "created_at": row[1].isoformat()}


def comments(photo_id: int, limit: int = 50) -> list[dict]:
    """A photo's oldest-first comments."""
    with router().for_object(photo_id) as (conn, schema):
        rows = conn.execute(
            f"SELECT id, user_id, username, body, created_at FROM {schema}.comments "
            "WHERE photo_id = %s ORDER BY id LIMIT %s",
            (photo_id, limit),
        ).fetchall()
    return [{"id": r[0], "photo_id": photo_id, "user_id": r[1], "username": r[2], "body": r[3],
             "created_at": r[4].isoformat()} for r in rows]


def photo_row(photo_id: int) -> dict | None:
    """A photo's record straight from its shard (the worker must not act on a cached copy)."""
    return _load_from_shards([photo_id]).get(photo_id)


def set_thumbnail(photo_id: int, thumb_key: str) -> None:
    """Record a photo's thumbnail key."""
    with router().for_object(photo_id) as (conn, schema):
        conn.execute(f"UPDATE {schema}.photos SET thumb_key = %s WHERE id = %s", (thumb_key, photo_id))
    invalidate(photo_id)
