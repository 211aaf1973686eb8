"""Model files a request names: the extractor weights and the classifier checkpoint.

A reference is ``{"uri", "sha256"}``; the URI is a path on the evaluation server (``/...`` or
``file://...``) or an object in the store. The plan pins each file it will use by the sha256 of its
bytes as read at Start (the extractor's default file when no URI is given), so a request that cannot
run is refused before a job exists and the job reads exactly those bytes; ``read_ref`` checks them.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from skingenbench.services.core.errors import DataIntegrityError, FailedPrecondition, NotFound
from skingenbench.services.core.hashing import sha256_bytes, sha256_stream
from skingenbench.services.evaluation.core.extractors import default_weights_path, missing_weights_error
from skingenbench.services.platform.store import ObjectStore


def local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(unquote(urlparse(uri).path))
    return Path(uri) if uri.startswith("/") else None


def pin_weights(store: ObjectStore, extractor: str, ref: dict[str, str]) -> tuple[str, str]:
    """(the default file's path, or "" when the reference names the file; the sha256 of the weights).

    A missing file is the FailedPrecondition that names it and where to put it (the plan turns it into
    "domain space only" when the request allows that).
    """
    uri = ref.get("uri", "")
    path = local_path(uri) if uri else default_weights_path(extractor)
    if path is not None and not path.is_file():
        raise missing_weights_error(extractor, path)
    if path is None and not store.exists(store.key_from_uri(uri)):
        raise missing_weights_error(extractor, Path(uri))
    return ("" if uri else str(path)), pin_file(
        store, {"uri": uri or str(path), "sha256": ref.get("sha256", "")}, "extractor weights"
    )


def pin_file(store: ObjectStore, ref: dict[str, str], what: str) -> str:
    """The sha256 of a local file's or a store object's bytes, streamed; checked against the reference's."""
    uri = ref["uri"]
    path = local_path(uri)
    if path is not None:
        if not path.is_file():
            raise FailedPrecondition(f"{what} {path} does not exist on the evaluation server")
        with path.open("rb") as stream:
            digest = sha256_stream(stream)
    else:
        key = store.key_from_uri(uri)
        if not store.exists(key):
            raise NotFound(f"{what} not found: {uri}")
        with store.open(key) as stream:
            digest = sha256_stream(stream)
    if ref.get("sha256") and digest != ref["sha256"]:
        raise DataIntegrityError(f"{what} {uri} does not match its sha256", expected=ref["sha256"])
    return digest


def read_ref(store: ObjectStore, ref: dict[str, str], what: str) -> bytes:
    """Bytes of a local file or a store object, checked against the reference's sha256 when it has one."""
    uri = ref["uri"]
    path = local_path(uri)
    if path is not None:
        if not path.is_file():
            raise FailedPrecondition(f"{what} {path} does not exist on the evaluation server")
        data = path.read_bytes()
    else:
        data = store.get_bytes(store.key_from_uri(uri))
    if ref.get("sha256") and sha256_bytes(data) != ref["sha256"]:
        raise DataIntegrityError(f"{what} {uri} does not match its sha256", expected=ref["sha256"])
    return data
