"""Posting a photo: store it, then queue its thumbnail and fan-out — both or neither.

A photo whose task cannot be queued (the broker is unreachable even after Celery's publish
retries) is removed again and the poster gets a 503 to retry: otherwise it would sit on its
shard forever with no thumbnail and in no follower's feed, while the client, told it failed,
posts it a second time.
"""

from __future__ import annotations

from kombu.exceptions import OperationalError

from app import counters, photos, tasks


class QueueUnavailable(RuntimeError):
    """The task queue did not take the photo's task; nothing was kept (503, retry)."""


def post_photo(user_id: int, data: bytes, caption: str, max_bytes: int) -> dict:
    """Store the image and its row on the owner's shard and queue its task; the photo record."""
    record = photos.create_photo(user_id, data, caption, max_bytes)
    try:
        tasks.after_photo_posted(record["id"])
    except OperationalError as exc:
        photos.delete_photo(record["id"])
        raise QueueUnavailable(f"the task queue is unreachable ({exc}); the photo was not kept, try again") from exc
    counters.incr(counters.PHOTOS_POSTED)
    return record
