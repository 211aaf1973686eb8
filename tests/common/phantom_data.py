"""Phantom data as the services receive it, for tests: import, lesion-grouped split, train-only preprocessing."""

from __future__ import annotations

from skingenbench.services.data.operations import import_source, split_sources
from skingenbench.services.preprocessing.batch import PreprocessSpec, preprocess_manifest

from skingenbench.api.v1 import common_pb2


def phantom_manifests(
    store, count: int = 160, width: int = 80, height: int = 64, seed: int = 11, split_seed: int = 2
) -> tuple[common_pb2.ManifestRef, common_pb2.ManifestRef]:
    """(the split manifest with every split, its train-only 'basic'/'tiny' preprocessing: 64x64 images with
    lesion masks and ITA, what generators train on)."""
    imported = import_source(
        store, "phantom", options={"count": count, "width": width, "height": height}, seed=seed
    )
    split = split_sources(
        store, [(imported.ref.uri, imported.ref.sha256)], (0.7, 0.15, 0.15), seed=split_seed
    )
    train_only = preprocess_manifest(
        store, split.ref.uri, PreprocessSpec("basic", "tiny", splits=("train",)), workers=1
    ).ref
    return (
        common_pb2.ManifestRef(uri=split.ref.uri, sha256=split.ref.sha256),
        common_pb2.ManifestRef(uri=train_only.uri, sha256=train_only.sha256),
    )
