"""A little demo data for the one-box: `python -m app.seed` (idempotent).

Three users (DEMO_USERS, password DEMO_PASSWORD) who follow each other, each with one photo
(a generated picture), so the first page a newcomer opens has something on it. Re-running
creates only what is missing. Configuration from the environment (app/config.py).
"""

from __future__ import annotations

import io
import os
import sys

DEMO_USERS = ("alice", "bob", "carol")
DEMO_PASSWORD = "photostack-demo"
COLOURS = {"alice": (231, 111, 81), "bob": (42, 157, 143), "carol": (233, 196, 106)}


def demo_image(username: str) -> bytes:
    """A 640×480 JPEG: a diagonal gradient in the user's colour."""
    from PIL import Image

    r, g, b = COLOURS.get(username, (120, 120, 120))
    gradient = Image.linear_gradient("L").resize((640, 480))
    tint = Image.new("RGB", (640, 480), (r, g, b))
    image = Image.composite(tint, Image.new("RGB", (640, 480), (20, 20, 40)), gradient)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def seed(log=print) -> int:
    """Create what is missing of the demo data; returns how many objects were created."""
    from app import photos, posting, social, users
    from app.config import app_config

    created = 0
    people = {}
    for name in DEMO_USERS:
        user = users.user_by_username(name)
        if user is None:
            try:
                user = users.create_user(name, DEMO_PASSWORD)
                created += 1
                log(f"seed: user {name}")
            except users.UsernameTaken:  # another seeder won the race
                user = users.user_by_username(name)
        people[name] = user
    for name, user in people.items():
        for other in people.values():
            if other.id != user.id and social.follow(user.id, other.id):
                created += 1
    for name, user in people.items():
        if not photos.user_photos(user.id, limit=1):
            posting.post_photo(user.id, demo_image(name), f"Hello from {name}", app_config().max_upload_bytes)
            created += 1
            log(f"seed: photo of {name}")
    return created


def main() -> int:
    """CLI entry point: one line per created object, then a summary; exit 1 + one line on error."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")
    import django

    try:
        django.setup()
        created = seed()
    except Exception as exc:  # noqa: BLE001 — one clear line, not a traceback, for the converge log
        print(f"seed: error: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
              file=sys.stderr)
        return 1
    print(f"seed: {created} created; demo users {', '.join(DEMO_USERS)} (password {DEMO_PASSWORD!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
