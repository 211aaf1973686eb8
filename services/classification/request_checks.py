"""The checks on a classification request, run twice: by the servicer before a job starts, and by the job
on its persisted request.

The servicer runs them so that a bad request is an error with its status (DESIGN.md, rule 6), not a
failed job. The job runs them again because it may start long after the request was accepted, or again
after a restart, and by then the store may have changed. Requests are the dicts the job runner persists
(proto field names; int64 values as JSON strings).
"""

from __future__ import annotations

from typing import Any

from services.classification.inference import read_metadata
from services.common.classes import SPLITS
from services.common.errors import InvalidArgument, NotFound
from services.common.manifest import Manifest, read_manifest
from services.common.store import ObjectStore


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
