"""The checks on a classification request that the job kinds' plan steps share.

They run once, at Start, so that a bad request is an error with its status (DESIGN.md, rule 6), not a
failed job; what they find (a checkpoint's sha256, a manifest's bytes) is pinned in the plan, and the
job checks it again when it reads the objects, so a store changed in between is DATA_LOSS, not a
silently different result.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from skingenbench.services.core.classes import CLASSES, SPLITS
from skingenbench.services.core.classifiers.checkpoint import read_metadata
from skingenbench.services.core.errors import DataIntegrityError, InvalidArgument, NotFound
from skingenbench.services.core.hashing import sha256_stream
from skingenbench.services.core.manifest import Manifest
from skingenbench.services.platform import readable
from skingenbench.services.platform.job_kind import ObjectRef
from skingenbench.services.platform.manifest_io import pin_manifest, read_manifest
from skingenbench.services.platform.store import ObjectStore

from skingenbench.api.v1 import common_pb2

_SHA256 = re.compile(r"[0-9a-f]{64}")


def require_object(store: ObjectStore, uri: str, what: str) -> str:
    """The store key of a URI the request needs, which must be given and must exist.

    Classification reads store objects only (``platform.readable``'s rule, its store half): a path on the
    server is refused the same way whether or not it exists.
    """
    if not uri:
        raise InvalidArgument(f"{what} is required")
    key = readable.store_key(store, uri, what)
    if not store.exists(key):
        raise NotFound(f"{what} not found: {uri}")
    return key


def split_name(value: str) -> str:
    """A split field; empty means the test split."""
    split = value or "test"
    if split not in SPLITS:
        raise InvalidArgument(f"unknown split {split!r}", hint=f"one of: {', '.join(SPLITS)}")
    return split


def count_field(value: int, name: str, maximum: int | None = None) -> int:
    """A non-negative integer field of a request, at most ``maximum``."""
    if value < 0 or (maximum is not None and value > maximum):
        top = "" if maximum is None else maximum
        raise InvalidArgument(f"{name} must be in 0..{top}, got {value}")
    return int(value)


def class_labels(labels: Iterable[str]) -> tuple[str, ...]:
    """A request's class labels, sorted; none given means every class."""
    given = set(labels)
    unknown = sorted(given - set(CLASSES))
    if unknown:
        raise InvalidArgument(f"unknown labels {unknown}", hint=f"classes: {', '.join(CLASSES)}")
    return tuple(sorted(given or set(CLASSES)))


def checkpoint_metadata(store: ObjectStore, uri: str) -> dict[str, Any]:
    """A checkpoint's metadata, read from the head of the file: it is a checkpoint, without loading weights."""
    with store.open(require_object(store, uri, "checkpoint")) as stream:
        return read_metadata(stream)


def checkpoint_ref(store: ObjectStore, uri: str, sha256: str = "") -> tuple[ObjectRef, dict[str, Any]]:
    """A checkpoint pinned by the sha256 of its file, and its metadata (read from the file's head).

    ``sha256`` is the request's ``checkpoint_sha256`` (the training job's ``checkpoint`` output carries
    it): a file that does not match is DATA_LOSS here, at Start. Empty: the bytes read now are pinned.
    """
    sha256 = sha256.lower()
    if sha256 and not _SHA256.fullmatch(sha256):
        raise InvalidArgument(
            f"checkpoint_sha256 must be 64 hex digits, got {sha256[:80]!r}",
            field="checkpoint_sha256",
        )
    with store.open(require_object(store, uri, "checkpoint")) as stream:
        digest = sha256_stream(stream)
    if sha256 and digest != sha256:
        raise DataIntegrityError(
            f"checkpoint {uri} does not match checkpoint_sha256 (sha256 {digest[:12]}… ≠ {sha256[:12]}…)",
            hint="the file changed since training wrote it, or it is another file",
            field="checkpoint_sha256",
        )
    # Hashed before the header is parsed: a file that is not the one asked for is DATA_LOSS, whatever it is.
    return ObjectRef(uri, digest), checkpoint_metadata(store, uri)


def object_sha256(store: ObjectStore, uri: str, what: str) -> str:
    """The sha256 of an object the request needs, as it is now: what a plan pins."""
    with store.open(require_object(store, uri, what)) as stream:
        return sha256_stream(stream)


def pinned_manifest(store: ObjectStore, ref: common_pb2.ManifestRef, what: str) -> tuple[Manifest, str]:
    """The manifest a request's ManifestRef names (checked against its sha256) and the sha256 of its bytes."""
    require_object(store, ref.uri, what)
    return pin_manifest(store, ref.uri, ref.sha256)


@dataclass(frozen=True)
class RequestedManifest:
    """A request's ManifestRef as the client sent it, and the sha256 of the manifest's bytes at Start.

    Output documents record the reference as it was sent (``as_request``), so identical requests give
    identical documents; the job reads exactly the bytes the plan pinned (``read``).
    """

    uri: str
    sha256: str  # as sent; "" means the client asked for no check
    item_count: int  # as sent (the flows send it); recorded, never trusted
    pinned_sha256: str

    def as_request(self) -> dict[str, str]:
        """The reference as a request's JSON reads (proto3 JSON: int64 as a string, empty fields left out)."""
        sent = {
            "uri": self.uri,
            "sha256": self.sha256,
            "item_count": str(self.item_count) if self.item_count else "",
        }
        return {name: value for name, value in sent.items() if value}

    def read(self, store: ObjectStore) -> Manifest:
        return read_manifest(store, self.uri, self.pinned_sha256)


def requested_manifest(
    store: ObjectStore, ref: common_pb2.ManifestRef, what: str
) -> tuple[Manifest, RequestedManifest]:
    """The manifest a request names, and its reference as sent and pinned (see ``RequestedManifest``)."""
    manifest, pinned = pinned_manifest(store, ref, what)
    return manifest, RequestedManifest(ref.uri, ref.sha256, ref.item_count, pinned)
