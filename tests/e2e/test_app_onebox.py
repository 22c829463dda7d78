"""The app end to end over HTTP through nginx on the converged one-box (`ops up`): sign-up,
follow, post, thumbnail, feed, concurrent likes, bad uploads, shard placement, the browser."""

from __future__ import annotations

import os
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from app.shards import username_shard
from infra.config import INSTAGRAM_EPOCH_MS
from infra.sharding import decode_id, physical_db, schema_name
from infra.shardstore import stored_shard_map
from tests.chromium import Browser
from tests.e2e.conftest import OUTPUT, jpeg, wait_until

pytestmark = pytest.mark.onebox

MEDIA_ROOT = "/srv/photostack/media"


def fetch(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers["Content-Type"], response.read()


def media_files(logical: int) -> set[str]:
    """Every stored original and thumbnail of one logical shard (keys are p/<shard>/…, t/<shard>/…)."""
    found = set()
    for kind in ("p", "t"):
        directory = f"{MEDIA_ROOT}/{kind}/{logical:04d}"
        if os.path.isdir(directory):
            found |= {f"{kind}/{name}" for name in os.listdir(directory)}
    return found


def test_post_thumbnail_and_follower_feed(base_url, new_user):
    poster, poster_name, _ = new_user("poster")
    follower, _, _ = new_user("fan")
    status, _ = follower.json("POST", f"/api/users/{poster_name}/follow")
    assert status == 200

    status, photo = poster.post_photo(jpeg(), "sunset")
    assert status == 201, photo
    photo_id = photo["id"]

    shown = wait_until(lambda: poster.json("GET", f"/api/photos/{photo_id}")[1].get("thumbnail_url"))
    assert shown, "no thumbnail within 30 s"
    status, content_type, data = fetch(base_url + shown)
    assert (status, content_type) == (200, "image/jpeg") and data[:2] == b"\xff\xd8"
    status, _, original = fetch(base_url + photo["image_url"])
    assert status == 200 and len(original) > len(data)

    feed = wait_until(lambda: [p for p in follower.json("GET", "/api/feed")[1]["photos"] if p["id"] == photo_id])
    assert feed and feed[0]["caption"] == "sunset" and feed[0]["username"] == poster_name


def test_fifty_concurrent_likers_give_an_exact_count(base_url, new_user):
    owner, _, _ = new_user("liked")
    status, photo = owner.post_photo(jpeg(320, 240))
    assert status == 201
    with ThreadPoolExecutor(16) as pool:
        likers = list(pool.map(lambda _: new_user("liker")[0], range(50)))
    # Fifty at once may be more than the one-box's in-flight limit lets in: the rest are refused
    # with 503 + Retry-After before any work, and retry as clients do. Every like lands once.
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(
            lambda c: c.json_honouring_retry_after("POST", f"/api/photos/{photo['id']}/like"), likers))
    assert [s for s, _ in results] == [200] * 50
    # Liking twice changes nothing.
    assert likers[0].json("POST", f"/api/photos/{photo['id']}/like")[1]["like_count"] == 50
    assert owner.json("GET", f"/api/photos/{photo['id']}")[1]["like_count"] == 50


def test_bad_uploads_get_a_clear_4xx_and_leave_nothing(base_url, new_user, onebox):
    client, name, _ = new_user("bad")
    logical = username_shard(name, stored_shard_map(onebox.config, "onebox").logical_shards)
    before = media_files(logical)
    cases = {
        "not an image": (b"%PDF-1.4 definitely not a photo\n" * 100, {400, 415}),
        "empty": (b"", {400}),
        "too large": (os.urandom(11 * 1024 * 1024), {413}),
    }
    for label, (data, statuses) in cases.items():
        status, body = client.post_photo(data, label)
        assert status in statuses, f"{label}: {status} {body}"
        assert "error" in body and body["error"], f"{label}: no error message: {body}"
    assert media_files(logical) == before
    status, page = client.json("GET", f"/api/users/{name}")
    assert status == 200 and page["photos"] == []


def test_objects_live_on_their_owners_shard(new_user, onebox):
    shard_map = stored_shard_map(onebox.config, "onebox")
    client, name, user = new_user("placed")
    _, fan_name, fan = new_user("placedfan")
    status, photo = client.post_photo(jpeg(320, 240))
    assert status == 201
    logical = username_shard(name, shard_map.logical_shards)
    for object_id in (user["id"], photo["id"]):
        assert decode_id(int(object_id), INSTAGRAM_EPOCH_MS).logical_shard == logical
    assert decode_id(int(fan["id"]), INSTAGRAM_EPOCH_MS).logical_shard == username_shard(
        fan_name, shard_map.logical_shards)

    schema, home = schema_name(logical), shard_map.physical_of(logical)
    password = onebox.secret("dbPassword")
    for physical in range(shard_map.physical_shards):
        dsn = (f"host=127.0.0.1 port={onebox.config.onebox.pgbouncer_port} dbname={physical_db(physical)} "
               f"user=photostack password={password}")
        with psycopg.connect(dsn, prepare_threshold=None, autocommit=True) as conn:
            has_schema = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.photos",)).fetchone()[0]
            rows = (conn.execute(f"SELECT (SELECT count(*) FROM {schema}.users WHERE id = %s), "
                                 f"(SELECT count(*) FROM {schema}.photos WHERE id = %s)",
                                 (int(user["id"]), int(photo["id"]))).fetchone() if has_schema else (0, 0))
        assert rows == ((1, 1) if physical == home else (0, 0)), f"{physical_db(physical)}: {rows}"


def test_browser_shows_the_posted_photo_in_the_feed(base_url, new_user, tmp_path):
    client, _, _ = new_user("browser")
    status, photo = client.post_photo(jpeg(640, 480), "seen in chromium")
    assert status == 201
    thumb = wait_until(lambda: client.json("GET", f"/api/photos/{photo['id']}")[1].get("thumbnail_url"))
    assert thumb
    wait_until(lambda: any(p["id"] == photo["id"] for p in client.json("GET", "/api/feed")[1]["photos"]))

    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "app-feed.png"
    shot.unlink(missing_ok=True)
    cookie = {"name": "photostack_session", "value": client.session_cookie(), "url": base_url + "/"}
    with Browser(tmp_path / "chromium") as browser:
        browser.open(base_url + "/", cookies=[cookie])
        key = thumb.rsplit("/", 1)[1].split(".")[0]
        loaded = browser.wait_for(
            f"[...document.images].some(i => i.src.includes('{key}') && i.complete && i.naturalWidth > 0)")
        assert loaded, f"the feed page shows no loaded image of {key}: {browser.evaluate('document.body.innerText')!r}"
        assert "seen in chromium" in browser.evaluate("document.body.innerText")
        browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_release_is_current_and_a_second_converge_changes_nothing(onebox):
    import re
    import subprocess
    import sys

    from roles.app.release import CURRENT, build_release

    version = build_release().version
    assert os.path.realpath(CURRENT) == f"/opt/photostack/releases/{version}"
    with open("/run/photostack/app-8001.pid") as f:
        environ = open(f"/proc/{f.read().strip()}/environ", "rb").read().split(b"\0")
    assert f"PHOTOSTACK_RELEASE={version}".encode() in environ  # Sentry's release
    done = subprocess.run([sys.executable, "-m", "ops", "converge", "--role", "app", "--role", "worker"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and re.search(r"changed=0 failed=0", done.stdout), done.stdout + done.stderr
