"""A batch over a streamed manifest is the batch over the manifest in memory: the same address (so a re-run
finds the runs made before streaming), the same selection and seeds, the same output manifest."""

from __future__ import annotations

import pytest
from skingenbench.services.core.manifest import ParentRef
from skingenbench.services.data.operations import import_source, split_sources
from skingenbench.services.platform.manifest_io import open_manifest, read_manifest
from skingenbench.services.platform.store import LocalFolderStore
from skingenbench.services.preprocessing.batch import (
    PreprocessSpec,
    plan_batch,
    preprocess_manifest,
    run_batch,
)


@pytest.fixture(scope="module")
def split_set(tmp_path_factory):
    store = LocalFolderStore(tmp_path_factory.mktemp("store"))
    imported = import_source(store, "phantom", options={"count": 12, "width": 64, "height": 48}, seed=5)
    split = split_sources(store, [(imported.ref.uri, imported.ref.sha256)], (0.5, 0.25, 0.25), 0)
    return store, split.ref


@pytest.mark.parametrize("splits", [(), ("val",), ("train", "test")])
def test_the_plan_is_the_same_streamed_or_in_memory(split_set, splits):
    store, ref = split_set
    spec = PreprocessSpec("basic", "tiny", seed=3, splits=splits)
    in_memory = plan_batch(read_manifest(store, ref.uri), spec, ref.uri)
    with open_manifest(store, ref.uri, ref.sha256) as streamed:
        assert streamed.streamed
        assert plan_batch(streamed, spec, ref.uri) == in_memory
    manifest = read_manifest(store, ref.uri)
    assert in_memory.selected == len([i for i in manifest.items if not splits or i.split in splits]) > 0


def _without_time(manifest) -> dict:
    data = manifest.to_dict()
    del data["provenance"]["created_at"]
    return data


def test_the_output_manifest_is_the_same_streamed_or_in_memory(split_set):
    store, ref = split_set
    spec = PreprocessSpec("basic", "tiny", seed=3, splits=("train",))
    source = read_manifest(store, ref.uri)
    target = plan_batch(source, spec, ref.uri)
    parent = ParentRef(ref.uri, ref.sha256)
    in_memory = run_batch(store, source, parent, spec, target, workers=1)
    before = read_manifest(store, in_memory.ref.uri)
    streamed = preprocess_manifest(store, ref.uri, spec, input_sha256=ref.sha256, workers=1)
    after = read_manifest(store, streamed.ref.uri)
    assert (
        streamed.ref.uri == in_memory.ref.uri and streamed.processed == in_memory.processed == target.selected
    )
    assert _without_time(after) == _without_time(before)
    assert after.extra["selected"] == target.selected
