"""The checks on a classification request that the job kinds' plan steps share.

They run once, at Start, so that a bad request is an error with its status (DESIGN.md, rule 6), not a
failed job; what they find (a checkpoint's sha256, a manifest's bytes) is pinned in the plan, and the
job checks it again when it reads the objects, so a store changed in between is DATA_LOSS, not a
silently different result.
"""

from __future__ import annotations

from typing import Any

from skingenbench.services.core.classes import SPLITS
from skingenbench.services.core.classifiers.checkpoint import read_metadata
from skingenbench.services.core.errors import InvalidArgument, NotFound
from skingenbench.services.core.hashing import sha256_stream
from skingenbench.services.core.manifest import Manifest
from skingenbench.services.platform.job_kind import ObjectRef
from skingenbench.services.platform.manifest_io import pin_manifest, read_manifest
from skingenbench.services.platform.store import ObjectStore


def require_object(store: ObjectStore, uri: str, what: str) -> str:
    """The store key of a URI the request needs, which must be given and must exist."""
    if not uri:
        raise InvalidArgument(f"{what} is required")
    key = store.key_from_uri(uri)
    if not store.exists(key):
        raise NotFound(f"{what} not found: {uri}")
    return key


def manifest_from_ref(store: ObjectStore, ref: dict[str, Any] | None, what: str) -> Manifest:
    """The manifest an object reference (``{"uri", "sha256"}``) names, checked against its sha256."""
    ref = ref or {}
    require_object(store, ref.get("uri", ""), what)
    return read_manifest(store, ref["uri"], ref.get("sha256", ""))


def split_name(value: str) -> str:
    """A split field; empty means the test split."""
    split = value or "test"
    if split not in SPLITS:
        raise InvalidArgument(f"unknown split {split!r}", hint=f"one of: {', '.join(SPLITS)}")
    return split


def count_field(request: dict[str, Any], name: str, maximum: int | None = None) -> int:
    """A non-negative integer field (int64 fields arrive as JSON strings)."""
    value = int(request.get(name, 0) or 0)
    if value < 0 or (maximum is not None and value > maximum):
        top = "" if maximum is None else maximum
        raise InvalidArgument(f"{name} must be in 0..{top}, got {value}")
    return value


def checkpoint_metadata(store: ObjectStore, uri: str) -> dict[str, Any]:
    """A checkpoint's metadata, read from the head of the file: it is a checkpoint, without loading weights."""
    with store.open(require_object(store, uri, "checkpoint")) as stream:
        return read_metadata(stream)


def checkpoint_ref(store: ObjectStore, uri: str) -> tuple[ObjectRef, dict[str, Any]]:
    """A checkpoint pinned by the sha256 of its file, and its metadata (read from the file's head)."""
    metadata = checkpoint_metadata(store, uri)
    with store.open(store.key_from_uri(uri)) as stream:
        return ObjectRef(uri, sha256_stream(stream)), metadata


def pinned_manifest(store: ObjectStore, ref, what: str) -> tuple[Manifest, str]:
    """The manifest a request's ManifestRef names (checked against its sha256) and the sha256 of its bytes."""
    require_object(store, ref.uri, what)
    return pin_manifest(store, ref.uri, ref.sha256)
