"""Preprocessing benchmarks (issue 20, item 3).

- **Per core, against plain OpenCV DullRazor**: images per CPU second of decode + pipeline + PNG
  encoding (image and lesion mask), augmentation off, one OpenCV thread, on 600x450 phantom JPEGs;
  the peer is what a user would write by hand (black-hat with a 17x17 cross, threshold 10, Telea
  inpainting radius 1, resize to 256x256, PNG). Each side runs in its own fresh process, alternately.
- **The service against the same core in-process**: one worker each, the rate divided by the items
  the run actually processed, median of alternating pairs in fresh processes.
- **Peak memory at 1k and 10k images**: each run in a fresh process that only preprocesses, its own
  peak (VmHWM, see ``bench.fresh``); the processed count is checked against the requested one.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fresh import alternating_pairs, measure_in_fresh_process, spread

PEER = "plain OpenCV DullRazor: black-hat 17x17 cross, threshold 10, Telea r1, resize 256, PNG"


def _phantom_images(count: int, width: int, height: int, seed: int = 0) -> list:
    import numpy as np
    from skingenbench.services.data.core.phantom import PhantomConfig, render_phantom

    rng = np.random.default_rng(seed)
    config = PhantomConfig(width=width, height=height)
    labels = ["NV", "BCC", "BKL", "MEL", "SCC"]
    return [render_phantom(labels[i % 5], rng, config).image for i in range(count)]


def write_phantom_jpegs(folder: Path, count: int, width: int = 600, height: int = 450) -> list[Path]:
    """HAM10000-like inputs: phantom images as quality-95 JPEGs."""
    import cv2

    paths = []
    for index, image in enumerate(_phantom_images(count, width, height)):
        path = folder / f"phantom_{index:05d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        paths.append(path)
    return paths


def _encoded_inputs(folder: str) -> list[bytes]:
    return [path.read_bytes() for path in sorted(Path(folder).glob("*.jpg"))]


def _per_cpu_second(step, inputs: list[bytes]) -> float:
    import cv2

    cv2.setNumThreads(1)
    step(inputs[0])  # untimed: OpenCV and the pipeline build tables lazily
    started = time.process_time()
    for data in inputs:
        step(data)
    return len(inputs) / (time.process_time() - started)


def project_rate(folder: str, pipeline: str = "advanced", profile: str = "paper") -> float:
    """Fresh-process child: decode, pipeline (augmentation off), encode image and lesion mask."""
    from skingenbench.services.core.imaging.decoding import decode_image, encode_mask_png, encode_png
    from skingenbench.services.preprocessing.core.pipeline_registry import create_pipeline

    run = create_pipeline(pipeline, profile)

    def step(data: bytes) -> None:
        result = run(decode_image(data), seed=0, augment=False)
        encode_png(result.image)
        encode_mask_png(result.lesion_mask)

    return _per_cpu_second(step, _encoded_inputs(folder))


def peer_rate(folder: str, size: int = 256) -> float:
    """Fresh-process child: DullRazor as a user would write it with OpenCV alone (no mask, no ITA)."""
    import cv2
    import numpy as np

    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (17, 17))

    def step(data: bytes) -> None:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        blackhat = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, cross)
        _, hair = cv2.threshold(blackhat, 10, 255, cv2.THRESH_BINARY)
        clean = cv2.inpaint(bgr, hair, 1, cv2.INPAINT_TELEA)
        cv2.imencode(".png", cv2.resize(clean, (size, size), interpolation=cv2.INTER_AREA))

    return _per_cpu_second(step, _encoded_inputs(folder))


def per_core_against_opencv(count: int = 60, pairs: int = 5) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        write_phantom_jpegs(Path(folder), count)
        advanced = alternating_pairs(
            lambda: measure_in_fresh_process("bench.preprocessing:project_rate", folder=folder)["result"],
            lambda: measure_in_fresh_process("bench.preprocessing:peer_rate", folder=folder)["result"],
            pairs,
        )
        basic = [
            measure_in_fresh_process("bench.preprocessing:project_rate", folder=folder, pipeline="basic")[
                "result"
            ]
            for _ in range(3)
        ]
    return {
        "unit": "images per CPU second (one OpenCV thread), decode + pipeline + PNG encode, no augmentation",
        "images": count,
        "input": "600x450 phantom JPEG (quality 95)",
        "output": "256x256 PNG + lesion mask PNG (project); 256x256 PNG (peer)",
        "advanced_over_opencv_dullrazor": advanced,
        "peer": PEER,
        "goal": 1.0,
        "basic_images_per_cpu_s": spread(basic, 2),
    }


# -- the service against the core in-process -----------------------------------------------------------
def prepare_split(folder: str, count: int) -> dict[str, str]:
    """Fresh-process child: a phantom import of ``count`` 600x450 images and its split manifest."""
    from skingenbench.services.data.operations import import_source, split_sources
    from skingenbench.services.platform.store import LocalFolderStore

    store = LocalFolderStore(folder)
    imported = import_source(store, "phantom", options={"count": count, "width": 600, "height": 450}, seed=7)
    split = split_sources(store, [(imported.ref.uri, imported.ref.sha256)], (0.7, 0.15, 0.15), 0)
    return {"uri": split.ref.uri, "sha256": split.ref.sha256}


def in_process_run(folder: str, uri: str, seed: int) -> dict[str, float]:
    """Fresh-process child: the core's batch run, one worker; (items processed, images/s wall)."""
    from skingenbench.services.platform.store import LocalFolderStore
    from skingenbench.services.preprocessing.batch import PreprocessSpec, preprocess_manifest

    started = time.perf_counter()
    outcome = preprocess_manifest(
        LocalFolderStore(folder), uri, PreprocessSpec("advanced", "paper", seed=seed), workers=1
    )
    seconds = time.perf_counter() - started
    return {"processed": outcome.processed, "images_per_s": outcome.processed / seconds}


def service_run(folder: str, uri: str, sha256: str, seed: int) -> dict[str, float]:
    """Fresh-process child: the same run as a StartPreprocess job over gRPC (server started untimed)."""
    from skingenbench.services.platform.client import open_channel, watch_job
    from skingenbench.services.platform.settings import ServiceSettings
    from skingenbench.services.platform.store import LocalFolderStore
    from skingenbench.services.stages import start_service

    from skingenbench.api.v1 import common_pb2, preprocessing_pb2, preprocessing_pb2_grpc

    store = LocalFolderStore(folder)
    service = start_service("preprocessing", ServiceSettings("preprocessing", port=0), store)
    try:
        with open_channel(service.target) as channel:
            stub = preprocessing_pb2_grpc.PreprocessingStub(channel)
            started = time.perf_counter()
            job = stub.StartPreprocess(
                preprocessing_pb2.PreprocessRequest(
                    input=common_pb2.ManifestRef(uri=uri, sha256=sha256),
                    pipeline="advanced",
                    profile="paper",
                    seed=seed,
                    workers=1,
                )
            )
            final = watch_job(channel, job.job_id)
            seconds = time.perf_counter() - started
            if final.state != common_pb2.JOB_STATE_SUCCEEDED:
                raise RuntimeError(final.error.message)
            summary = json.loads(final.result_json)
            if summary.get("reused_output"):
                raise RuntimeError("the service reattached an earlier run: nothing was measured")
            processed = int(summary["processed"])
    finally:
        service.stop(5)
    return {"processed": processed, "images_per_s": processed / seconds}


def service_vs_in_process(count: int = 120, pairs: int = 5) -> dict[str, Any]:
    """Each run has its own seed, so its output is new (nothing is reattached or reused)."""
    seeds = iter(range(1, 2 * pairs + 1))
    processed: list[int] = []

    def rate(target: str, **kwargs: Any) -> float:
        outcome = measure_in_fresh_process(target, folder=folder, seed=next(seeds), **kwargs)["result"]
        processed.append(int(outcome["processed"]))
        return outcome["images_per_s"]

    with tempfile.TemporaryDirectory() as folder:
        split = measure_in_fresh_process("bench.preprocessing:prepare_split", folder=folder, count=count)[
            "result"
        ]
        summary = alternating_pairs(
            lambda: rate("bench.preprocessing:service_run", uri=split["uri"], sha256=split["sha256"]),
            lambda: rate("bench.preprocessing:in_process_run", uri=split["uri"]),
            pairs,
        )
    return {
        "images_requested": count,
        "images_processed": sorted(set(processed)),
        "unit": "images/s wall clock, one worker; ratio = service / in-process",
        "service_over_in_process": summary,
        "goal": 0.9,
    }


# -- peak memory ------------------------------------------------------------------------------------------
def import_phantoms(folder: str, count: int, distinct: int = 1000) -> dict[str, Any]:
    """Fresh-process child: a manifest of ``count`` items of 128x96 phantom images. At most ``distinct``
    images are rendered; beyond that the manifest names them again under new ids (a run's memory depends on
    its item count, not on whether two items share bytes, and rendering 10k phantoms took longer than the
    preprocessing being measured)."""
    import dataclasses

    from skingenbench.services.core.manifest import Manifest, Provenance
    from skingenbench.services.data.operations import import_source
    from skingenbench.services.platform.manifest_io import read_manifest, write_manifest
    from skingenbench.services.platform.store import LocalFolderStore

    store = LocalFolderStore(folder)
    imported = import_source(
        store, "phantom", options={"count": min(count, distinct), "width": 128, "height": 96}, seed=3
    )
    if count <= distinct:
        return {"uri": imported.ref.uri, "items": imported.ref.item_count}
    rendered = read_manifest(store, imported.ref.uri).items
    items = [
        dataclasses.replace(
            rendered[index % len(rendered)],
            image_id=f"{rendered[index % len(rendered)].image_id}_r{index}",
            lesion_id=f"{rendered[index % len(rendered)].lesion_id}_r{index}",
        )
        for index in range(count)
    ]
    ref = write_manifest(store, "bench/repeated.json", Manifest(items, Provenance("bench")))
    return {"uri": ref.uri, "items": ref.item_count, "distinct_images": len(rendered)}


def preprocess_for_memory(folder: str, uri: str) -> int:
    """Fresh-process child: only the preprocessing run (tiny profile, one worker); items processed."""
    from skingenbench.services.platform.store import LocalFolderStore
    from skingenbench.services.preprocessing.batch import PreprocessSpec, preprocess_manifest

    spec = PreprocessSpec("advanced", "tiny")
    return preprocess_manifest(LocalFolderStore(folder), uri, spec, workers=1).processed


def peak_memory(counts: tuple[int, ...] = (1000, 10000), distinct: int = 1000) -> dict[str, Any]:
    """Peak RSS of a fresh process preprocessing N phantom images (128x96, tiny profile, one worker); at
    most ``distinct`` of them rendered (see :func:`import_phantoms`)."""
    peaks, processed, imported_counts = {}, {}, {}
    for count in counts:
        with tempfile.TemporaryDirectory() as folder:
            imported = measure_in_fresh_process(
                "bench.preprocessing:import_phantoms", folder=folder, count=count, distinct=distinct
            )["result"]
            run = measure_in_fresh_process(
                "bench.preprocessing:preprocess_for_memory", folder=folder, uri=imported["uri"]
            )
            peaks[str(count)], processed[str(count)] = run["peak_rss_mib"], run["result"]
            imported_counts[str(count)] = imported["items"]
    first, last = peaks[str(counts[0])], peaks[str(counts[-1])]
    return {
        "images_requested": list(counts),
        "images_imported": imported_counts,
        "images_processed": processed,
        "distinct_images": min(distinct, max(counts)),
        "peak_rss_mib": peaks,
        "growth_ratio": round(last / first, 3),
        "goal": 1.1,
        "note": "each run's own VmHWM in a fresh process that only preprocesses; one worker in-process",
    }


def run(quick: bool = False) -> dict[str, Any]:
    pairs = 3 if quick else 5
    return {
        "per_core": per_core_against_opencv(20 if quick else 60, pairs),
        "service_vs_in_process": service_vs_in_process(40 if quick else 120, pairs),
        "peak_memory": peak_memory((200, 2000) if quick else (1000, 10000)),
    }
