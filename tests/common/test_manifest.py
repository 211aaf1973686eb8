"""Manifests: round trip, verification on read, and content addressing."""

from __future__ import annotations

import json

import pytest
from skingenbench.services.core.errors import DataIntegrityError, InvalidArgument, NotFound
from skingenbench.services.core.hashing import content_address, sha256_bytes
from skingenbench.services.core.manifest import Item, Manifest, ObjectEntry, Provenance
from skingenbench.services.platform.manifest_io import (
    read_item,
    read_manifest,
    verify_manifest,
    write_manifest,
)


def _manifest(store, n=3) -> Manifest:
    items = []
    for i in range(n):
        data = f"image-{i}".encode()
        info = store.put_bytes(f"set/images/{i}.png", data)
        mask = store.put_bytes(f"set/masks/{i}.png", b"mask" + data)
        items.append(
            Item(
                key=info.key,
                sha256=info.sha256,
                label="MEL",
                lesion_id=f"L{i // 2}",
                split="train",
                source="phantom",
                image_id=f"I{i}",
                meta={"age": 50 + i},
                objects={"mask_lesion": ObjectEntry(mask.key, mask.sha256)},
            )
        )
    return Manifest(items, Provenance(stage="test", config={"size": 64}, seed=7))


def test_round_trip_keeps_every_field(store):
    manifest = _manifest(store)
    ref = write_manifest(store, "set/manifest.json", manifest)
    assert ref.item_count == 3 and ref.uri == store.uri("set/manifest.json")
    again = read_manifest(store, ref.uri, ref.sha256)
    assert again.to_dict() == manifest.to_dict()
    assert again.provenance.code_version and again.provenance.seed == 7
    assert list(verify_manifest(store, again)) == []


def test_tampered_object_fails_verification(store):
    manifest = _manifest(store)
    store.put_bytes("set/images/1.png", b"tampered")
    with pytest.raises(DataIntegrityError, match="does not match"):
        read_item(store, manifest.items[1])
    assert read_item(store, manifest.items[0]) == b"image-0"
    problems = list(verify_manifest(store, manifest))
    assert len(problems) == 1 and "set/images/1.png" in problems[0]


def test_tampered_side_object_and_missing_object_are_reported(store):
    manifest = _manifest(store)
    store.put_bytes("set/masks/0.png", b"other mask")
    store.delete("set/images/2.png")
    problems = list(verify_manifest(store, manifest))
    assert len(problems) == 2
    assert any("masks/0.png" in p for p in problems) and any("not found" in p for p in problems)


def test_changed_manifest_is_refused(store):
    ref = write_manifest(store, "m.json", _manifest(store))
    assert read_manifest(store, "m.json", ref.sha256)
    store.put_bytes("m.json", store.get_bytes("m.json").replace(b'"MEL"', b'"NV"'))
    with pytest.raises(DataIntegrityError):
        read_manifest(store, "m.json", ref.sha256)


def test_bad_manifests_are_clear_errors(store):
    with pytest.raises(NotFound):
        read_manifest(store, "nowhere.json")
    store.put_bytes("junk.json", b"{not json")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        read_manifest(store, "junk.json")
    store.put_bytes("other.json", b'{"hello": 1}')
    with pytest.raises(InvalidArgument, match="not a SkinGenBench manifest"):
        read_manifest(store, "other.json")
    data = _manifest(store).to_dict()
    del data["items"][1]["sha256"]
    store.put_bytes("missing-field.json", json.dumps(data).encode())
    with pytest.raises(InvalidArgument, match="item 1 lacks field"):
        read_manifest(store, "missing-field.json")
    data["items"][1]["sha256"] = "x"
    data["items"][1]["key"] = "../../etc/passwd"
    store.put_bytes("traversal.json", json.dumps(data).encode())
    with pytest.raises(InvalidArgument):
        read_manifest(store, "traversal.json")


def test_content_address_depends_on_inputs_config_seed_and_version():
    base = content_address("preprocess", "1", ["a", "b"], {"size": 256}, 0)
    assert base == content_address("preprocess", "1", ["a", "b"], {"size": 256}, 0)
    assert base != content_address("preprocess", "1", ["b", "a"], {"size": 256}, 0)
    assert base != content_address("preprocess", "1", ["a", "b"], {"size": 128}, 0)
    assert base != content_address("preprocess", "1", ["a", "b"], {"size": 256}, 1)
    assert base != content_address("preprocess", "2", ["a", "b"], {"size": 256}, 0)
    # key order inside a config does not matter
    assert content_address("s", "1", [], {"a": 1, "b": 2}) == content_address("s", "1", [], {"b": 2, "a": 1})


def test_manifest_content_hash_ignores_timestamps(store):
    one = _manifest(store)
    two = Manifest(one.items, Provenance(stage="test", created_at="2000-01-01T00:00:00+00:00"))
    assert one.content_hash() == two.content_hash()
    assert one.content_hash() == sha256_bytes(
        json.dumps([i.to_dict() for i in one.items], sort_keys=True, separators=(",", ":")).encode()
    )
