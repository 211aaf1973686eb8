"""Model files a request names: the extractor weights and the classifier checkpoint.

A reference is ``{"uri", "sha256"}``; the URI is a path on the evaluation server (``/...`` or
``file://...``) or an object in the store. The plan checks that the extractor weights are there (the
extractor's default file when no URI is given), so a request that cannot run is refused before a job
exists; the job reads the weights and the checkpoint and checks each against its sha256.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from skingenbench.services.core.errors import DataIntegrityError, FailedPrecondition
from skingenbench.services.core.hashing import sha256_bytes
from skingenbench.services.evaluation.core.extractors import default_weights_path, missing_weights_error
from skingenbench.services.platform.store import ObjectStore


def local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(unquote(urlparse(uri).path))
    return Path(uri) if uri.startswith("/") else None


def check_weights_present(store: ObjectStore, extractor: str, ref: dict[str, str]) -> None:
    uri = ref.get("uri", "")
    path = local_path(uri) if uri else default_weights_path(extractor)
    if path is not None and not path.is_file():
        raise missing_weights_error(extractor, path)
    if path is None and not store.exists(store.key_from_uri(uri)):
        raise missing_weights_error(extractor, Path(uri))


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
