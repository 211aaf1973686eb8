"""Runs with several workers share one long-lived pool and give what one in-process worker gives."""

from __future__ import annotations

from skingenbench.services.data.operations import import_source
from skingenbench.services.platform.manifest_io import read_manifest
from skingenbench.services.platform.store import LocalFolderStore
from skingenbench.services.preprocessing import batch
from skingenbench.services.preprocessing.batch import PreprocessSpec, preprocess_manifest


def test_two_worker_runs_share_one_pool_and_match_one_worker(tmp_path):
    store = LocalFolderStore(tmp_path)
    uri = import_source(store, "phantom", options={"count": 6, "width": 96, "height": 72}, seed=1).ref.uri
    hashes, pools = {}, []
    for workers, pipeline in ((2, "advanced"), (2, "basic"), (1, "advanced"), (1, "basic")):
        outcome = preprocess_manifest(store, uri, PreprocessSpec(pipeline, "tiny", seed=4), workers=workers)
        assert outcome.processed == 6
        hashes[workers, pipeline] = read_manifest(store, outcome.ref.uri).content_hash()
        if workers == 2:
            pools.append(batch._executor(2))
    assert pools[0] is pools[1]  # the second job, with another pipeline, reused the first one's pool
    assert hashes[2, "advanced"] == hashes[1, "advanced"] and hashes[2, "basic"] == hashes[1, "basic"]
    assert hashes[1, "advanced"] != hashes[1, "basic"]
