"""The checks on a preprocessing request that the job kinds' plan steps share.

They run once, at Start, so that a bad request is an error with its status (DESIGN.md, rule 6), not a
failed job. What they find is pinned in the plan: a manifest's sha256 as read at Start, which the job
checks again when it reads the manifest, so a store changed in between is DATA_LOSS, not a silently
different result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.core.manifest import Manifest, ParentRef
from skingenbench.services.platform.job_kind import ObjectRef
from skingenbench.services.platform.manifest_io import pin_manifest, read_manifest
from skingenbench.services.platform.servicer import parse_json_field, request_key
from skingenbench.services.platform.store import ObjectStore
from skingenbench.services.preprocessing.core import pipeline_registry

from skingenbench.api.v1 import common_pb2


@dataclass(frozen=True)
class PinnedManifest:
    """An input manifest as the request named it (``ref``) and the sha256 of its bytes as read at Start."""

    ref: ObjectRef
    sha256: str

    def read(self, store: ObjectStore) -> Manifest:
        """The manifest the plan was made on; DATA_LOSS if its bytes changed since."""
        return read_manifest(store, self.ref.uri, self.sha256)

    def parent(self, store: ObjectStore) -> ParentRef:
        # The sha256 as the request gave it: the provenance outputs recorded before plans pinned inputs.
        return ParentRef(store.uri(store.key_from_uri(self.ref.uri)), self.ref.sha256)


def pin_input(
    store: ObjectStore, ref: common_pb2.ManifestRef, what: str = "input manifest", field: str = "input"
) -> tuple[Manifest, PinnedManifest]:
    """The manifest a request's reference names (NOT_FOUND if absent, DATA_LOSS if its sha256 differs);
    ``field`` is the request field holding ``ref``, named when its URI is not a valid object key."""
    if not ref.uri:
        raise InvalidArgument(f"{what} is required", field=f"{field}.uri")
    request_key(store, ref.uri, f"{field}.uri")
    manifest, sha256 = pin_manifest(store, ref.uri, ref.sha256)
    return manifest, PinnedManifest(ObjectRef(ref.uri, ref.sha256), sha256)


def pipeline_overrides(name: str, profile: str, config_json: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A request's config overrides and the pipeline config they give, as dicts; refuses what is unknown."""
    overrides = parse_json_field(config_json, "config_json")
    known = pipeline_registry.list_pipelines()
    if name not in known:
        raise InvalidArgument(f"unknown pipeline {name!r}", hint=f"one of: {', '.join(known)}")
    return overrides, pipeline_registry.pipeline_config(name, profile, **overrides).to_dict()
