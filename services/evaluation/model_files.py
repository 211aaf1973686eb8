"""Model files a request names: the extractor weights and the classifier checkpoint.

A reference is ``{"uri", "sha256"}``; the URI names an object in the store or a file under one of the
server's read roots (``skingenbench.services.platform.readable``: anything else is INVALID_ARGUMENT, the
same answer whether or not the file exists). The plan pins each file it will use by the sha256 of its
bytes as read at Start (the extractor's default file when no URI is given), so a request that cannot
run is refused before a job exists and the job reads exactly those bytes; ``read_ref`` checks them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from skingenbench.services.core.errors import DataIntegrityError, FailedPrecondition, NotFound
from skingenbench.services.core.hashing import sha256_bytes, sha256_stream
from skingenbench.services.evaluation.core.extractors import default_weights_path, missing_weights_error
from skingenbench.services.platform import readable
from skingenbench.services.platform.store import ObjectStore

# The request's field for each kind of file (named in a refusal).
FIELDS = {"extractor weights": "extractor_weights", "classifier checkpoint": "classifier_checkpoint"}


def _source(store: ObjectStore, uri: str, what: str) -> readable.Readable:
    """Where a reference points, by the one read rule (checked again when the job reads it)."""
    return readable.resolve(store, uri, FIELDS.get(what, what))


def check_references(store: ObjectStore, refs: dict[str, dict[str, str]]) -> None:
    """Every reference a request gives (what it is -> reference) follows the read rule; no URI: none given."""
    for what, ref in refs.items():
        if ref.get("uri"):
            _source(store, ref["uri"], what)


def pin_weights(store: ObjectStore, extractor: str, ref: dict[str, str]) -> tuple[str, str]:
    """(the default file's path, or "" when the reference names the file; the sha256 of the weights).

    A missing file is the FailedPrecondition that names it and where to put it (the plan turns it into
    "domain space only" when the request allows that).
    """
    uri = ref.get("uri", "")
    if not uri:  # the server's own default file, under its weights folder: no request names a path
        path = default_weights_path(extractor)
        if not path.is_file():
            raise missing_weights_error(extractor, path)
        with path.open("rb") as stream:
            digest = sha256_stream(stream)
        _check(digest, ref, str(path), "extractor weights")
        return str(path), digest
    source = _source(store, uri, "extractor weights")
    if source.path is not None and not source.path.is_file():
        raise missing_weights_error(extractor, source.path)
    if source.path is None and not store.exists(source.key):
        raise missing_weights_error(extractor, Path(uri))
    return "", pin_file(store, ref, "extractor weights")


def _check(digest: str, ref: dict[str, str], uri: str, what: str) -> None:
    if ref.get("sha256") and digest != ref["sha256"]:
        raise DataIntegrityError(f"{what} {uri} does not match its sha256", expected=ref["sha256"])


@contextlib.contextmanager
def _open(store: ObjectStore, ref: dict[str, str], what: str) -> Iterator[BinaryIO]:
    """The bytes of a reference's file or store object, as a stream; a missing one names the reference."""
    uri = ref["uri"]
    source = _source(store, uri, what)
    if source.path is not None:
        if not source.path.is_file():
            raise FailedPrecondition(f"{what} {uri} is not a file on the evaluation server")
        with source.path.open("rb") as stream:
            yield stream
        return
    if not store.exists(source.key):
        raise NotFound(f"{what} not found: {uri}")
    with store.open(source.key) as stream:
        yield stream


def pin_file(store: ObjectStore, ref: dict[str, str], what: str) -> str:
    """The sha256 of a file's or a store object's bytes, streamed; checked against the reference's."""
    with _open(store, ref, what) as stream:
        digest = sha256_stream(stream)
    _check(digest, ref, ref["uri"], what)
    return digest


def checkpoint_metadata(store: ObjectStore, ref: dict[str, str]) -> dict:
    """A classifier checkpoint's metadata from the head of its file (no weights loaded): FailedPrecondition
    when the file is not one, with a message that never quotes the file's bytes."""
    from skingenbench.services.core.classifiers.checkpoint import read_metadata

    with _open(store, ref, "classifier checkpoint") as stream:
        return read_metadata(stream)


def read_ref(store: ObjectStore, ref: dict[str, str], what: str) -> bytes:
    """Bytes of a file or a store object, checked against the reference's sha256 when it has one."""
    with _open(store, ref, what) as stream:
        data = stream.read()
    _check(sha256_bytes(data), ref, ref["uri"], what)
    return data
