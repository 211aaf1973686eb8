"""Run a preprocessing pipeline over a manifest: streamed, on a pool of worker processes.

The parent process reads each item from the store (checking its hash), a worker decodes and
processes it, and the parent writes the processed image, the lesion mask and the item's
measurements back. At most ``workers * 4`` items are in flight, so memory stays flat however large
the data set is. An unreadable item is recorded as skipped with its reason and the run goes on;
only when more than ``max_failure_fraction`` of the items fail does the run fail. The output lives
under a content address of (input items, pipeline, config, seed, augmentation, splits), so the same
request finds the finished output instead of recomputing it; its manifest is written last.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from skingenbench.services.core.errors import (
    DataIntegrityError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from skingenbench.services.core.hashing import content_address, output_prefix, sha256_bytes
from skingenbench.services.core.manifest import (
    MANIFEST_NAME,
    Item,
    Manifest,
    ManifestRef,
    ObjectEntry,
    ParentRef,
    Provenance,
    Skipped,
)
from skingenbench.services.platform.manifest_io import read_item, read_manifest, write_manifest
from skingenbench.services.platform.store import ObjectStore

STAGE = "preprocess"
STAGE_VERSION = "1"


@dataclass
class PreprocessSpec:
    """What to run: a registered pipeline, its profile and overrides, and the selection of items."""

    pipeline: str
    profile: str = "paper"
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    augment_copies: int = 0
    splits: tuple[str, ...] = ()
    max_failure_fraction: float = 0.05

    def validate(self) -> None:
        if self.augment_copies < 0 or self.augment_copies > 32:
            raise InvalidArgument(f"augment_copies must be in 0..32, got {self.augment_copies}")
        if not 0.0 <= self.max_failure_fraction <= 1.0:
            raise InvalidArgument(f"max_failure_fraction must be in [0, 1], got {self.max_failure_fraction}")
        if self.seed < 0:
            raise InvalidArgument(f"seed must be non-negative, got {self.seed}")


@dataclass
class PreprocessOutcome:
    ref: ManifestRef
    reused: bool
    processed: int
    skipped: int


# -- the worker side: one pipeline per process, built once ----------------------------------------
_worker_pipeline = None


def _init_worker(name: str, profile: str, overrides: dict[str, Any]) -> None:
    import cv2
    from skingenbench.services.preprocessing.core.pipeline_registry import create_pipeline

    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would oversubscribe
    global _worker_pipeline
    _worker_pipeline = create_pipeline(name, profile, **overrides)


def process_one(data: bytes, seeds: list[tuple[int, bool]]) -> list[tuple[bytes, bytes, dict[str, Any]]] | str:
    """Decode and run the pipeline for each (seed, augment) variant; a string is a skip reason."""
    from skingenbench.services.core.imaging.decoding import (
        ImageDecodeError,
        decode_image,
        encode_mask_png,
        encode_png,
    )

    try:
        rgb = decode_image(data)
    except ImageDecodeError as exc:
        return f"{exc.reason}: {exc.message}"
    outputs = []
    for seed, augment in seeds:
        result = _worker_pipeline(rgb, seed=seed, augment=augment)
        outputs.append((encode_png(result.image), encode_mask_png(result.lesion_mask), result.measurements))
    return outputs


# -- the parent side ---------------------------------------------------------------------------------
def _variants(spec: PreprocessSpec, index: int) -> list[tuple[int, bool]]:
    from skingenbench.services.preprocessing.core.geometry import image_seed

    base = [(image_seed(spec.seed, index), False)]
    return base + [(image_seed(spec.seed + 1 + copy, index), True) for copy in range(spec.augment_copies)]


def output_location(input_manifest: Manifest, spec: PreprocessSpec, config: dict[str, Any]) -> str:
    address = content_address(
        STAGE, STAGE_VERSION, [input_manifest.content_hash()],
        {"pipeline": spec.pipeline, "config": config, "augment_copies": spec.augment_copies,
         "splits": sorted(spec.splits)},
        spec.seed,
    )
    return output_prefix(f"{STAGE}-{spec.pipeline}", address)


def preprocess_manifest(
    store: ObjectStore,
    input_uri: str,
    spec: PreprocessSpec,
    *,
    input_sha256: str = "",
    workers: int = 0,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], None] | None = None,
) -> PreprocessOutcome:
    """Process every selected item of a manifest; returns the output manifest's reference."""
    from skingenbench.services.preprocessing.core.pipeline_registry import pipeline_config

    spec.validate()
    config = pipeline_config(spec.pipeline, spec.profile, **spec.overrides).to_dict()
    source = read_manifest(store, input_uri, input_sha256)
    items = [item for item in source.items if not spec.splits or item.split in spec.splits]
    if not items:
        raise FailedPrecondition(f"no items to process in {input_uri} (splits {list(spec.splits) or 'all'})")
    prefix = output_location(source, spec, config)
    manifest_key = f"{prefix}/{MANIFEST_NAME}"
    if store.exists(manifest_key):
        raw = store.get_bytes(manifest_key)
        existing = Manifest.from_json(raw)
        failed = int(existing.extra.get("failed", 0))
        # The threshold is not part of the address: a stricter request must still refuse this output.
        _check_failures(failed, int(existing.extra.get("selected", len(items))), spec,
                        existing.skipped[len(existing.skipped) - failed:])
        ref = ManifestRef(store.uri(manifest_key), sha256_bytes(raw), len(existing.items))
        return PreprocessOutcome(ref, True, len(existing.items), failed)

    workers = workers or max(1, os.cpu_count() or 1)
    out_items: list[Item] = []
    skipped: list[Skipped] = []
    started = time.perf_counter()
    with _executor(workers, spec) as pool:
        for done, (item, outcome) in enumerate(_bounded_map(pool, store, items, spec, workers * 4), 1):
            if should_stop is not None:
                should_stop()
            if isinstance(outcome, str):
                skipped.append(Skipped(item.key, outcome))
            else:
                out_items += _store_outputs(store, prefix, item, outcome)
            if progress is not None and (done % 16 == 0 or done == len(items)):
                elapsed = time.perf_counter() - started
                progress(done, len(items), {"images_per_s": done / elapsed if elapsed else 0.0,
                                            "skipped": float(len(skipped))})
    _check_failures(len(skipped), len(items), spec, skipped)
    manifest = Manifest(
        out_items,
        Provenance(stage=f"{STAGE}:{spec.pipeline}", stage_version=STAGE_VERSION,
                   config={"pipeline": spec.pipeline, "profile": spec.profile, "config": config,
                           "augment_copies": spec.augment_copies, "splits": list(spec.splits)},
                   seed=spec.seed, parents=[ParentRef(store.uri(store.key_from_uri(input_uri)), input_sha256)]),
        name=f"{source.name or 'data'}-{spec.pipeline}",
        skipped=list(source.skipped) + skipped,
        extra={"pipeline": spec.pipeline, "selected": len(items), "failed": len(skipped)},
    )
    ref = write_manifest(store, manifest_key, manifest)
    return PreprocessOutcome(ref, False, len(out_items), len(skipped))


def _check_failures(failed: int, selected: int, spec: PreprocessSpec, skipped: list[Skipped]) -> None:
    fraction = failed / max(1, selected)
    if fraction > spec.max_failure_fraction:
        examples = "; ".join(f"{s.ref}: {s.reason}" for s in skipped[:3])
        raise FailedPrecondition(
            f"{failed} of {selected} items could not be processed "
            f"({fraction:.1%} > max_failure_fraction {spec.max_failure_fraction:.1%}): {examples}",
            hint="fix or drop the broken items, or raise max_failure_fraction",
        )


class _InProcess:
    """The executor interface, run in this process: one worker needs no pool."""

    def __init__(self, spec: PreprocessSpec) -> None:
        _init_worker(spec.pipeline, spec.profile, spec.overrides)

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def _executor(workers: int, spec: PreprocessSpec):
    if workers == 1:
        return _InProcess(spec)
    # "spawn", not fork: the parent runs gRPC and OpenCV thread pools, and a forked child inherits
    # their locks in whatever state they were (a known deadlock with both libraries).
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(spec.pipeline, spec.profile, spec.overrides))


def _bounded_map(pool: ProcessPoolExecutor | _InProcess, store: ObjectStore, items: list[Item], spec: PreprocessSpec,
                 window: int) -> Iterator[tuple[Item, Any]]:
    """Submit items as earlier ones finish, keeping at most ``window`` in flight, in input order."""
    pending: deque[tuple[Item, Future | str]] = deque()
    for index, item in enumerate(items):
        try:
            data = read_item(store, item)
            pending.append((item, pool.submit(process_one, data, _variants(spec, index))))
        except (NotFound, DataIntegrityError) as exc:
            pending.append((item, f"unreadable: {exc}"))
        while len(pending) >= window:
            yield _resolve(*pending.popleft())
    while pending:
        yield _resolve(*pending.popleft())


def _resolve(item: Item, outcome: Future | str) -> tuple[Item, Any]:
    return item, outcome if isinstance(outcome, str) else outcome.result()


def _store_outputs(store: ObjectStore, prefix: str, item: Item,
                   variants: list[tuple[bytes, bytes, dict[str, Any]]]) -> list[Item]:
    stem = item.image_id or item.key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    produced = []
    for copy, (png, mask_png, measurements) in enumerate(variants):
        name = stem if copy == 0 else f"{stem}_aug{copy}"
        image = store.put_bytes(f"{prefix}/images/{name}.png", png, "image/png")
        mask = store.put_bytes(f"{prefix}/masks/lesion/{name}.png", mask_png, "image/png")
        meta = {**item.meta, **measurements, "parent_key": item.key}
        if copy:
            meta["augmented_from"] = item.image_id
        produced.append(Item(
            key=image.key, sha256=image.sha256, label=item.label, lesion_id=item.lesion_id, split=item.split,
            source=item.source, image_id=name, meta=meta,
            objects={"mask_lesion": ObjectEntry(mask.key, mask.sha256)},
        ))
    return produced
