"""Manifests in the store: written last, read with their hash checked, items read verified.

The manifest model (items, provenance) is pure and lives in ``skingenbench.services.core.manifest``;
this module is the part that touches a store.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from skingenbench.services.core.errors import DataIntegrityError, InvalidArgument, NotFound
from skingenbench.services.core.hashing import sha256_bytes
from skingenbench.services.core.json_limits import MAX_MANIFEST_BYTES
from skingenbench.services.core.manifest import Item, Manifest, ManifestRef
from skingenbench.services.core.manifest_stream import StreamedManifest
from skingenbench.services.platform.store import ObjectStore


def write_manifest(store: ObjectStore, key: str, manifest: Manifest) -> ManifestRef:
    """Write a manifest. Call it last: every object it names must already be stored."""
    info = store.put_bytes(key, manifest.to_json(), "application/json")
    return ManifestRef(store.uri(key), info.sha256, len(manifest.items))


def read_manifest(store: ObjectStore, uri_or_key: str, expected_sha256: str = "") -> Manifest:
    """Read and parse a manifest; if a sha256 is expected, a different one is an error."""
    key = store.key_from_uri(uri_or_key)
    try:
        raw = store.get_bytes(key)
    except NotFound:
        raise NotFound(f"manifest not found: {store.uri(key)}", key=key) from None
    if expected_sha256 and sha256_bytes(raw) != expected_sha256:
        raise DataIntegrityError(
            f"manifest {store.uri(key)} has changed since it was referenced (sha256 mismatch)",
            expected=expected_sha256,
        )
    return Manifest.from_json(raw)


@contextlib.contextmanager
def open_manifest(
    store: ObjectStore, uri_or_key: str, expected_sha256: str = ""
) -> Iterator[StreamedManifest]:
    """A manifest whose items are read one at a time (``core/manifest_stream.py``): what a stage over a
    large set iterates instead of :func:`read_manifest`'s list.

    The object is copied once to a local temporary file while it is hashed, and every pass reads that
    copy: the hash checked is the hash of the bytes the passes parse, however the store's object changes
    meanwhile, and an S3 object is downloaded once. The errors are :func:`read_manifest`'s.
    """
    key = store.key_from_uri(uri_or_key)
    with tempfile.TemporaryDirectory(prefix="skingenbench-manifest-") as folder:
        copy = Path(folder) / "manifest.json"
        try:
            # Before copying: a manifest over the limit is refused without filling the disk with it.
            _refuse_over_limit(store.stat(key).size)
            info = store.get_file(key, copy)
        except NotFound:
            raise NotFound(f"manifest not found: {store.uri(key)}", key=key) from None
        if expected_sha256 and info.sha256 != expected_sha256:
            raise DataIntegrityError(
                f"manifest {store.uri(key)} has changed since it was referenced (sha256 mismatch)",
                expected=expected_sha256,
            )
        _refuse_over_limit(info.size)
        yield StreamedManifest(copy, info.sha256)


def _refuse_over_limit(size: int) -> None:
    # The message of core/json_limits.check_json_bounds, which read_manifest's Manifest.from_json applies.
    if size > MAX_MANIFEST_BYTES:
        raise InvalidArgument(
            f"manifest is {size} bytes; at most {MAX_MANIFEST_BYTES} are accepted",
            hint="JSON limits: skingenbench.services.core.json_limits",
            field="manifest",
        )


def read_verified(store: ObjectStore, key: str, sha256: str) -> bytes:
    """Read an object and check it against the hash its manifest recorded."""
    data = store.get_bytes(key)
    actual = sha256_bytes(data)
    if sha256 and actual != sha256:
        raise DataIntegrityError(
            f"object {store.uri(key)} does not match its manifest (sha256 {actual[:12]}… ≠ {sha256[:12]}…)",
            key=key,
        )
    return data


def read_item(store: ObjectStore, item: Item) -> bytes:
    return read_verified(store, item.key, item.sha256)


def verify_manifest(store: ObjectStore, manifest: Manifest) -> Iterator[str]:
    """Check every object (and side object) of a manifest; yields one line per problem."""
    for item in manifest.items:
        entries = [(item.key, item.sha256)] + [(o.key, o.sha256) for o in item.objects.values()]
        for key, sha in entries:
            try:
                read_verified(store, key, sha)
            except (NotFound, DataIntegrityError) as exc:
                yield str(exc)


def pin_manifest(store: ObjectStore, uri: str, expected_sha256: str = "") -> tuple[Manifest, str]:
    """A manifest and the sha256 of its bytes as read now: what a plan records to run on exactly it."""
    key = store.key_from_uri(uri)
    try:
        raw = store.get_bytes(key)
    except NotFound:
        raise NotFound(f"manifest not found: {store.uri(key)}", key=key) from None
    actual = sha256_bytes(raw)
    if expected_sha256 and actual != expected_sha256:
        raise DataIntegrityError(
            f"manifest {store.uri(key)} has changed since it was referenced (sha256 mismatch)",
            expected=expected_sha256,
        )
    return Manifest.from_json(raw), actual
