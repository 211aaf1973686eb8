"""Streamed manifests read exactly what ``Manifest.from_json`` reads, without holding the items (issue 20)."""

from __future__ import annotations

import json
import math
import random
import tracemalloc

import pytest
from skingenbench.services.core.errors import DataIntegrityError, InvalidArgument, NotFound
from skingenbench.services.core.manifest import Item, Manifest, ObjectEntry, ParentRef, Provenance, Skipped
from skingenbench.services.core.manifest_stream import StreamedManifest
from skingenbench.services.platform import manifest_io
from skingenbench.services.platform.manifest_io import open_manifest, write_manifest


def _items(count: int, seed: int = 0) -> list[Item]:
    rng = random.Random(seed)
    items = []
    for index in range(count):
        items.append(
            Item(
                key=f"set/images/{index:05d}.png",
                sha256=f"{rng.getrandbits(256):064x}",
                label=rng.choice(["NV", "BCC", "BKL", "MEL", "SCC"]),
                lesion_id=f"HAM_{index // 2:07d}",
                split=rng.choice(["train", "val", "test"]),
                source=rng.choice(["ham10000", "phantom"]),
                image_id=f"ISIC_{index:07d}",
                meta={
                    # Floats of every magnitude and bit pattern: yajl must read each as json does.
                    "ita": rng.uniform(-90, 90),
                    "tiny": rng.random() * 10.0 ** rng.randint(-300, -5),
                    "huge": rng.random() * 10.0 ** rng.randint(5, 300),
                    "rounded": round(rng.uniform(0, 1), 4),
                    "count": rng.randint(-(2**62), 2**62),
                    "flag": rng.random() < 0.5,
                    "none": None,
                    "text": rng.choice(["lower extremity", "Über ✓", "emoji 🙂", 'quote " and \\ slash', ""]),
                    "nested": {"list": [1, 2.5, "x", [None, {"deep": True}]], "empty": {}},
                },
                objects={"mask_lesion": ObjectEntry(f"set/masks/{index:05d}.png", "0" * 64)},
            )
        )
    return items


def _manifest(count: int = 40) -> Manifest:
    provenance = Provenance(
        stage="test", config={"size": 64, "items": [1, 2]}, seed=7, parents=[ParentRef("file:///p", "ab")]
    )
    skipped = [Skipped("set/images/broken.png", "not an image")]
    return Manifest(_items(count), provenance, "a set", skipped, {"selected": count, "items.item": 1})


def _streamed(tmp_path, raw: bytes) -> StreamedManifest:
    path = tmp_path / "manifest.json"
    path.write_bytes(raw)
    return StreamedManifest(path)


def _same(streamed: StreamedManifest, manifest: Manifest) -> None:
    assert [item.to_dict() for item in streamed.iter_items()] == [item.to_dict() for item in manifest.items]
    assert streamed.item_count == len(manifest.items)
    assert streamed.name == manifest.name and streamed.extra == manifest.extra
    assert streamed.provenance == manifest.provenance and streamed.skipped == manifest.skipped
    assert streamed.counts() == manifest.counts()
    assert streamed.content_hash() == manifest.content_hash()


def test_a_written_manifest_streams_and_reads_as_from_json(tmp_path):
    raw = _manifest().to_json()
    streamed = _streamed(tmp_path, raw)
    assert streamed.streamed
    _same(streamed, Manifest.from_json(raw))


def test_compact_and_reordered_documents_stream_too(tmp_path):
    data = _manifest(12).to_dict()
    reordered = {key: data[key] for key in reversed(list(data))}  # "version" and "format" after "items"
    raw = json.dumps(reordered, separators=(",", ":"), ensure_ascii=False).encode()
    streamed = _streamed(tmp_path, raw)
    assert streamed.streamed
    _same(streamed, Manifest.from_json(raw))


def test_a_manifest_without_items_streams(tmp_path):
    raw = Manifest([], Provenance("empty")).to_json()
    streamed = _streamed(tmp_path, raw)
    assert streamed.streamed and streamed.item_count == 0
    _same(streamed, Manifest.from_json(raw))


@pytest.mark.parametrize(
    "meta",
    [
        {"ita": math.nan},  # json writes NaN; yajl refuses it
        {"ita": -math.inf},
        {"count": 2**80},  # beyond yajl's 64-bit integers
        {"note": "lone \ud800 surrogate?"},  # yajl would read the lone surrogate as "?"
    ],
    ids=["nan", "infinity", "big-int", "lone-surrogate"],
)
def test_documents_yajl_reads_differently_are_read_by_json(tmp_path, meta):
    manifest = _manifest(5)
    manifest.items[3].meta.update(meta)
    raw = manifest.to_json()
    streamed = _streamed(tmp_path, raw)
    assert not streamed.streamed
    expected = Manifest.from_json(raw)
    assert repr([i.to_dict() for i in streamed.iter_items()]) == repr([i.to_dict() for i in expected.items])


def test_paired_surrogate_escapes_and_question_marks_still_stream(tmp_path):
    manifest = _manifest(5)
    manifest.items[0].meta["note"] = "why? 🙂"  # ensure_ascii writes the emoji as a surrogate pair
    raw = manifest.to_json()
    assert b"\\ud83d\\ude42" in raw
    streamed = _streamed(tmp_path, raw)
    # A "?" beside a surrogate escape is read by json (the check cannot tell a lone one from a pair
    # without decoding), with the same items.
    assert not streamed.streamed
    _same(streamed, Manifest.from_json(raw))
    manifest.items[0].meta["note"] = "no question 🙂"
    streamed = _streamed(tmp_path, manifest.to_json())
    assert streamed.streamed
    _same(streamed, manifest)


def test_ambiguous_top_level_keys_are_read_by_json(tmp_path):
    data = _manifest(3).to_dict()
    text = json.dumps(data)
    # A second "items" (json keeps the last) and a dotted key that ijson's path would confuse with an item.
    twice = text[:-1] + ', "items": []}'
    dotted = text[:-1] + ', "items.item": {"key": "a", "sha256": "b", "label": "c", "lesion_id": "d"}}'
    for raw in (twice.encode(), dotted.encode()):
        streamed = _streamed(tmp_path, raw)
        assert not streamed.streamed
        _same(streamed, Manifest.from_json(raw))


def _error(call) -> tuple[type, str]:
    with pytest.raises(Exception) as caught:
        call()
    return type(caught.value), str(caught.value)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: "{not json",
        lambda d: "[1, 2]",
        lambda d: "",
        lambda d: {**d, "format": "other"},
        lambda d: {**d, "version": 2, "items": [{"no": "fields"}]},  # the version is refused first
        lambda d: {**d, "items": d["items"][:1] + [{"key": "k"}]},
        lambda d: {**d, "items": {"not": "a list"}},
        lambda d: {**d, "provenance": {"unknown": 1}},
        lambda d: {**d, "items": d["items"] + [{**d["items"][0], "key": "../escape"}]},
        lambda d: {**d, "extra": {"deep": json.loads("[" * 80 + "]" * 80)}},
    ],
    ids=[
        "not-json",
        "a-list",
        "empty",
        "format",
        "version-before-items",
        "missing-field",
        "items-object",
        "provenance",
        "bad-key",
        "too-deep",
    ],
)
def test_bad_documents_get_from_json_errors(tmp_path, edit):
    result = edit(_manifest(3).to_dict())
    raw = (result if isinstance(result, str) else json.dumps(result)).encode()
    expected = _error(lambda: Manifest.from_json(raw))
    assert _error(lambda: _streamed(tmp_path, raw)) == expected


def test_a_manifest_nested_100000_deep_is_refused_without_a_prefix_pass(tmp_path, monkeypatch):
    """The hostile case of tests/reliability: the prefix-carrying parse must never see it (ijson's C backend
    builds a whole buffer's events, each with its dotted prefix, first: 24 GB for this document)."""
    import ijson

    prefix_passes: list[str] = []
    monkeypatch.setattr(ijson, "parse", lambda *args, **kwargs: prefix_passes.append("parse") or iter(()))
    document = json.dumps(_manifest(1).to_dict()).replace(
        '"items": [', '"items": [' + "[" * 100_000 + "]" * 100_000 + ", ", 1
    )
    path = tmp_path / "manifest.json"
    path.write_text(document)
    with pytest.raises(InvalidArgument, match="levels deep"):
        StreamedManifest(path)
    assert prefix_passes == []


def _peaks(path) -> tuple[int, int]:
    """Peak traced memory of reading ``path`` streamed (scan, content hash, one pass) and in memory."""
    tracemalloc.start()
    try:
        streamed = StreamedManifest(path)
        streamed.content_hash()
        for _ in streamed.iter_items():
            pass
        assert streamed.streamed
        _, streaming = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        Manifest.from_json(path.read_bytes()).content_hash()
        _, in_memory = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return streaming, in_memory


def test_items_are_not_held_while_streaming(tmp_path):
    import ijson  # noqa: F401  (imported before measuring: its module is not the manifest's memory)

    sizes = {}
    for count in (300, 3000):
        path = tmp_path / f"manifest-{count}.json"
        path.write_bytes(_manifest(count).to_json())
        sizes[count] = (path.stat().st_size, *_peaks(path))
    (small_bytes, small_streaming, small_in_memory), (big_bytes, big_streaming, big_in_memory) = (
        sizes[300],
        sizes[3000],
    )
    # In memory, the peak grows with the document (its bytes and every item, several times the file);
    # streamed, by the parser's buffer at most: a constant, whatever the size.
    assert big_in_memory - small_in_memory > 2 * (big_bytes - small_bytes)
    assert big_streaming - small_streaming < 0.1 * (big_bytes - small_bytes)
    assert big_streaming < big_in_memory / 5


def test_open_manifest_checks_the_hash_and_names_a_missing_one(store):
    ref = write_manifest(store, "set/manifest.json", _manifest(6))
    with open_manifest(store, ref.uri, ref.sha256) as streamed:
        assert streamed.streamed and streamed.sha256 == ref.sha256
        copy = streamed.path
        _same(streamed, manifest_io.read_manifest(store, ref.uri))
    assert not copy.exists()  # the local copy goes with the context
    changed = pytest.raises(DataIntegrityError, match="has changed since it was referenced")
    with changed, open_manifest(store, ref.uri, "0" * 64):
        pass
    with pytest.raises(NotFound, match="manifest not found"), open_manifest(store, "set/nowhere.json"):
        pass


def test_open_manifest_refuses_one_over_the_size_limit(store, monkeypatch):
    ref = write_manifest(store, "set/manifest.json", _manifest(2))
    monkeypatch.setattr(manifest_io, "MAX_MANIFEST_BYTES", 100)
    with pytest.raises(InvalidArgument, match="at most 100 are accepted"), open_manifest(store, ref.uri):
        pass


def test_an_error_inside_the_context_is_not_renamed(store):
    ref = write_manifest(store, "set/manifest.json", _manifest(2))
    with pytest.raises(NotFound, match="object not found"), open_manifest(store, ref.uri):
        store.get_bytes("set/other.png")
