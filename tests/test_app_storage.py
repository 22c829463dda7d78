"""The storage interface: local directory and S3 (boto3 against a moto server on loopback)."""

from __future__ import annotations

import boto3
import pytest

from app.storage import LocalStorage, S3Storage


@pytest.fixture
def s3_client(moto_account):
    """S3 on the module's moto server, emptied for this test, with the bucket `photos`."""
    client = boto3.client("s3", endpoint_url=moto_account, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket="photos")
    return client


def exercise(store) -> None:
    """The contract every backend keeps."""
    store.save("p/0001/abc.jpg", b"\xff\xd8data", "image/jpeg")
    assert store.exists("p/0001/abc.jpg")
    assert store.read("p/0001/abc.jpg") == b"\xff\xd8data"
    assert store.url("p/0001/abc.jpg") == "/media/p/0001/abc.jpg"
    store.save("p/0001/abc.jpg", b"new", "image/jpeg")
    assert store.read("p/0001/abc.jpg") == b"new"
    store.delete("p/0001/abc.jpg")
    assert not store.exists("p/0001/abc.jpg")
    store.delete("p/0001/abc.jpg")  # deleting a missing key is fine
    with pytest.raises(FileNotFoundError):
        store.read("p/0001/abc.jpg")


def test_local_storage(tmp_path):
    store = LocalStorage(tmp_path, "/media/")
    exercise(store)
    store.save("t/0001/x.jpg", b"x", "image/jpeg")
    assert (tmp_path / "t/0001/x.jpg").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in (tmp_path / "t/0001").iterdir()] == ["x.jpg"]  # no temp files left
    with pytest.raises(ValueError, match="leaves the media root"):
        store.save("../escape.jpg", b"x", "image/jpeg")


def test_s3_storage(s3_client):
    store = S3Storage("photos", "/media/", s3_client)
    exercise(store)
    store.save("p/0002/y.png", b"png", "image/png")
    head = s3_client.head_object(Bucket="photos", Key="p/0002/y.png")
    assert head["ContentType"] == "image/png"
