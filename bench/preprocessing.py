"""Preprocessing benchmarks (issue: preprocessing service, item 6).

- images/s per core of `basic` and `advanced` (paper profile) on 600×450 phantoms → 256×256,
  with the phantom's typical hair load; CPU time of one thread, so a shared machine does not skew it;
- the service end to end (gRPC + store + job) against the same core called in-process on the same
  images, one worker each; target ratio ≥ 0.9;
- peak memory of a preprocessing run at 1k and at 10k images (streamed: it must not grow with N).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _phantom_images(count: int, width: int, height: int, seed: int = 0) -> list:
    import numpy as np
    from skingenbench.services.data.core.phantom import PhantomConfig, render_phantom

    rng = np.random.default_rng(seed)
    config = PhantomConfig(width=width, height=height)
    labels = ["NV", "BCC", "BKL", "MEL", "SCC"]
    return [render_phantom(labels[i % 5], rng, config).image for i in range(count)]


def per_core_throughput(count: int = 60) -> dict[str, Any]:
    from skingenbench.services.preprocessing.core.throughput import bench_pipeline

    images = _phantom_images(count, 600, 450)
    return {
        name: {
            "images_per_s_per_core": round(
                bench_pipeline(name, images, "paper", augment=True, threads=1, cpu_time=True), 2
            ),
            "images": count,
            "input": "600x450 phantom",
            "output": "256x256",
        }
        for name in ("basic", "advanced")
    }


def service_vs_in_process(count: int = 120) -> dict[str, Any]:
    """Same manifest, same pipeline, one worker: in-process core vs StartPreprocess over gRPC."""
    from skingenbench.services.data.operations import import_source, split_sources
    from skingenbench.services.platform.client import open_channel, watch_job
    from skingenbench.services.platform.settings import ServiceSettings
    from skingenbench.services.platform.store import LocalFolderStore
    from skingenbench.services.preprocessing.batch import PreprocessSpec, preprocess_manifest
    from skingenbench.services.stages import start_service

    from skingenbench.api.v1 import common_pb2, preprocessing_pb2, preprocessing_pb2_grpc

    with tempfile.TemporaryDirectory() as folder:
        store = LocalFolderStore(folder)
        imported = import_source(store, "phantom", {"count": count, "width": 600, "height": 450}, seed=7)
        split = split_sources(store, [(imported.ref.uri, imported.ref.sha256)], (0.7, 0.15, 0.15), 0)
        service = start_service("preprocessing", ServiceSettings("preprocessing", port=0), store)
        rates: dict[str, list[float]] = {"in_process": [], "service": []}
        with open_channel(service.target) as channel:
            stub = preprocessing_pb2_grpc.PreprocessingStub(channel)
            # Alternate the two, twice, each with its own seed (another output, so nothing is reused),
            # and keep the best of each: the machine is shared and a single run is noisy.
            for seed in (1, 2, 3, 4):
                start = time.perf_counter()
                if seed % 2:
                    preprocess_manifest(
                        store, split.ref.uri, PreprocessSpec("advanced", "paper", seed=seed), workers=1
                    )
                    rates["in_process"].append(count / (time.perf_counter() - start))
                    continue
                job = stub.StartPreprocess(
                    preprocessing_pb2.PreprocessRequest(
                        input=common_pb2.ManifestRef(uri=split.ref.uri, sha256=split.ref.sha256),
                        pipeline="advanced",
                        profile="paper",
                        seed=seed,
                        workers=1,
                    )
                )
                final = watch_job(channel, job.job_id)
                rates["service"].append(count / (time.perf_counter() - start))
                assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error.message
        service.stop(5)
    in_process, through_service = max(rates["in_process"]), max(rates["service"])
    return {
        "images": count,
        "in_process_images_per_s": round(in_process, 2),
        "service_images_per_s": round(through_service, 2),
        "service_over_in_process": round(through_service / in_process, 3),
        "target": 0.9,
    }


_IMPORT_CHILD = """
import sys
from skingenbench.services.platform.store import LocalFolderStore
from skingenbench.services.data.operations import import_source
print(import_source(LocalFolderStore(sys.argv[1]), "phantom", {"count": int(sys.argv[2]), "width": 128,
                    "height": 96}, seed=3).ref.uri)
"""

# A fresh process that only preprocesses, so its peak RSS is the preprocessing run's own.
_PREPROCESS_CHILD = """
import json, resource, sys
from skingenbench.services.platform.store import LocalFolderStore
from skingenbench.services.preprocessing.batch import PreprocessSpec, preprocess_manifest
preprocess_manifest(LocalFolderStore(sys.argv[1]), sys.argv[2], PreprocessSpec("advanced", "tiny"), workers=1)
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak_memory(counts: tuple[int, ...] = (1000, 10000)) -> dict[str, Any]:
    """Peak RSS of a fresh process preprocessing N phantom images (128×96, tiny profile, one worker)."""
    results = {}
    repo = Path(__file__).resolve().parents[1]

    def child(script: str, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True, cwd=repo
        )
        return out.stdout.strip().splitlines()[-1]

    for count in counts:
        with tempfile.TemporaryDirectory() as folder:
            uri = child(_IMPORT_CHILD, folder, str(count))
            results[str(count)] = json.loads(child(_PREPROCESS_CHILD, folder, uri))["peak_rss_mib"]
    first, last = results[str(counts[0])], results[str(counts[-1])]
    return {
        "images": list(counts),
        "peak_rss_mib": {k: round(v, 1) for k, v in results.items()},
        "growth_ratio": round(last / first, 3),
        "note": "one worker in-process; the manifest's item list is the only per-image state kept",
    }


def run(quick: bool = False) -> dict[str, Any]:
    return {
        "per_core": per_core_throughput(20 if quick else 60),
        "service_vs_in_process": service_vs_in_process(40 if quick else 120),
        "peak_memory": peak_memory((200, 2000) if quick else (1000, 10000)),
    }
