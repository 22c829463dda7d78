"""Celery tasks: thumbnails (queue `thumbnails`) and feed fan-out (queue `feed`). Both are
idempotent, as acks_late redelivery requires."""

from __future__ import annotations

import logging

import psycopg
import redis
from PIL import Image

from app import counters, feed, photos, social
from app.celery import celery_app
from app.storage import storage
from app.thumbnails import thumbnail_bytes, thumbnail_key

log = logging.getLogger(__name__)
# Transient failures (storage, shard, Redis unreachable) retry with backoff; bad data does not.
TRANSIENT = (OSError, psycopg.OperationalError, redis.ConnectionError, redis.TimeoutError)
PUBLISH_CONFIRM_TIMEOUT_S = 1.0


@celery_app.task(name="photostack.make_thumbnail", autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def make_thumbnail(photo_id: int) -> str | None:
    """Make and record a photo's thumbnail, then fan out its first chunk; returns the thumbnail key.

    Fanning out after the thumbnail means feeds receive photos whose thumbnails exist; doing the
    first chunk (up to FANOUT_CHUNK followers: nearly every user) in this same task saves a
    message per post, and larger audiences continue as `fanout_photo` tasks on the feed queue.
    The fan-out runs on every delivery, even if the thumbnail was already made (a redelivery
    after a crash between the two), since a repeated feed push is harmless; an image Pillow
    cannot decode still fans out, shown in full.
    """
    record = photos.photo_row(photo_id)
    if record is None:
        log.warning("photo %s is gone; no thumbnail", photo_id)
        return None
    key = record["thumb_key"]
    if not key:
        store = storage()
        original = store.read(record["image_key"])  # OSError here is transient: retried
        try:
            thumb = thumbnail_bytes(original)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:  # Pillow's decode errors
            log.error("photo %s: no thumbnail, the image does not decode: %s", photo_id, exc)
            thumb = None
        if thumb is not None:
            key = thumbnail_key(record["image_key"])
            store.save(key, thumb, "image/jpeg")
            photos.set_thumbnail(photo_id, key)
            counters.incr(counters.THUMBNAILS)
    fan_out_chunk(photo_id, record["user_id"], after=0)
    return key


def fan_out_chunk(photo_id: int, owner_id: int, after: int, chunk: int = feed.FANOUT_CHUNK) -> int:
    """Push a photo into the feeds of the followers after `after` (one chunk; the owner's own
    feed with the first) and enqueue the next chunk as a task; returns the followers reached."""
    follower_ids = social.followers_after(owner_id, after, chunk)
    feed.push_to_feeds(photo_id, ([owner_id] if after == 0 else []) + follower_ids)
    if len(follower_ids) == chunk:
        fanout_photo.apply_async((photo_id, owner_id, follower_ids[-1], chunk))
    counters.incr(counters.FEED_FANOUT_WRITES, len(follower_ids))
    return len(follower_ids)


@celery_app.task(name="photostack.fanout_photo", autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def fanout_photo(photo_id: int, owner_id: int, after: int = 0, chunk: int = feed.FANOUT_CHUNK) -> int:
    """One further chunk of a photo's fan-out (the thumbnail task did the first)."""
    return fan_out_chunk(photo_id, owner_id, after, chunk)


def after_photo_posted(photo_id: int) -> None:
    """Enqueue the work a new photo needs: one publish (the thumbnail task then fans out).

    `argsrepr` given up front: Celery otherwise builds it with saferepr (a visible share of a
    post's CPU in the profile) only to show it in logs and monitoring events. The broker's
    confirm is awaited at most PUBLISH_CONFIRM_TIMEOUT_S (without a bound, a hung broker holds
    the post forever); a publish that timed out may still have been taken, which the idempotent
    task tolerates."""
    make_thumbnail.apply_async((photo_id,), argsrepr=f"({photo_id},)", kwargsrepr="{}",
                               confirm_timeout=PUBLISH_CONFIRM_TIMEOUT_S)
