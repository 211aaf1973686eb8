"""The object-store contract, run against the folder backend and a real S3 server (moto)."""

from __future__ import annotations

import hashlib
import io
import time

import pytest
from skingenbench.services.core.errors import InvalidArgument, NotFound, Unavailable
from skingenbench.services.platform.store import LocalFolderStore, S3Store, store_from_uri

BAD_KEYS = ["", "../escape", "/absolute", "a/../b", "a//b", "a/./b", "nul\x00byte", "back\\slash", "x/.."]


def test_bytes_round_trip_and_hash(store):
    info = store.put_bytes("a/b/c.bin", b"hello")
    assert info.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert info.size == 5
    assert store.get_bytes("a/b/c.bin") == b"hello"


def test_streaming_put_and_get_of_a_multi_megabyte_object(store):
    payload = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB, not a multiple of any chunk size
    info = store.put_stream("big/object.bin", io.BytesIO(payload))
    assert info.size == len(payload)
    received = bytearray()
    with store.open("big/object.bin") as stream:
        while chunk := stream.read(65536):
            received += chunk
    assert bytes(received) == payload


def test_files_round_trip(store, tmp_path):
    source = tmp_path / "in.txt"
    source.write_bytes(b"file content")
    store.put_file("files/in.txt", source)
    info = store.get_file("files/in.txt", tmp_path / "out" / "copy.txt")
    assert (tmp_path / "out" / "copy.txt").read_bytes() == b"file content"
    assert info.sha256 == hashlib.sha256(b"file content").hexdigest()


def test_exists_stat_list_delete(store):
    for key in ["p/one", "p/two", "p/sub/three", "q/other", "pp/not-under-p-slash"]:
        store.put_bytes(key, key.encode())
    assert store.exists("p/one") and not store.exists("p/none")
    assert store.stat("p/two").size == len(b"p/two")
    assert list(store.list("p/")) == ["p/one", "p/sub/three", "p/two"]
    assert list(store.list("p")) == ["p/one", "p/sub/three", "p/two", "pp/not-under-p-slash"]
    store.delete("p/one")
    store.delete("p/one")  # deleting a missing object is fine
    assert not store.exists("p/one")
    assert list(store.list("nothing/")) == []


def test_overwrite_replaces_the_object(store):
    store.put_bytes("k", b"old")
    store.put_bytes("k", b"new")
    assert store.get_bytes("k") == b"new"


def test_missing_objects_are_not_found(store):
    with pytest.raises(NotFound):
        store.get_bytes("missing/key")
    with pytest.raises(NotFound):
        store.stat("missing/key")


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_rejected(store, key):
    with pytest.raises(InvalidArgument):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidArgument):
        store.get_bytes(key)


def test_uris_round_trip_and_foreign_uris_are_refused(store):
    uri = store.uri("x/y.json")
    assert store.key_from_uri(uri) == "x/y.json"
    assert store.key_from_uri("x/y.json") == "x/y.json"
    with pytest.raises(InvalidArgument):
        store.key_from_uri("s3://some-other-bucket/x/y.json")


def test_folder_store_writes_atomically_and_cannot_escape(tmp_path):
    store = LocalFolderStore(tmp_path / "root")
    store.put_bytes("obj", b"data")
    assert list((tmp_path / "root" / ".tmp").iterdir()) == []  # no temp file left behind

    class Exploding(io.BytesIO):
        def read(self, n=-1):
            raise OSError("disk went away")

    store.put_bytes("obj", b"data")
    with pytest.raises(OSError):
        store.put_stream("obj", Exploding())
    assert store.get_bytes("obj") == b"data"  # the old object survives a failed write
    assert list((tmp_path / "root" / ".tmp").iterdir()) == []
    assert not (tmp_path / "escape").exists()
    with pytest.raises(InvalidArgument):
        store.put_bytes(".tmp/sneaky", b"x")
    assert list(store.list()) == ["obj"]


def test_s3_store_down_is_unavailable_quickly():
    import socket

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(Unavailable):
        S3Store(
            "bucket", endpoint=f"127.0.0.1:{port}", access_key="a", secret_key="b", timeout_s=1, retries=0
        )
    assert time.monotonic() - start < 30


def test_store_from_uri(tmp_path, moto_endpoint):
    assert isinstance(store_from_uri(tmp_path.as_uri()), LocalFolderStore)
    assert isinstance(store_from_uri(str(tmp_path / "plain")), LocalFolderStore)
    env = {
        "SKINGENBENCH_S3_ENDPOINT": f"http://{moto_endpoint}",
        "SKINGENBENCH_S3_ACCESS_KEY": "testing",
        "SKINGENBENCH_S3_SECRET_KEY": "testing",
    }
    s3 = store_from_uri("s3://from-env-bucket/some/prefix", env=env)
    assert isinstance(s3, S3Store) and s3.root_uri == "s3://from-env-bucket/some/prefix"
    s3.put_bytes("k", b"v")
    assert s3.get_bytes("k") == b"v"
    with pytest.raises(InvalidArgument, match="endpoint"):
        store_from_uri("s3://bucket", env={})
    with pytest.raises(InvalidArgument, match="scheme"):
        store_from_uri("ftp://host/x", env={})
