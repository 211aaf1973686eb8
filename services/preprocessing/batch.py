"""Run a preprocessing pipeline over a manifest: streamed, on a pool of worker processes.

The parent process reads each item from the store (checking its hash), a worker decodes and
processes it, and the parent writes the processed image, the lesion mask and the item's
measurements back. At most ``workers * 4`` items are in flight, the input manifest is read one item at
a time (``manifest_io.open_manifest``) and the output records wait on disk (``manifest_spool``), so
memory stays flat however large the data set is (issue 20: from 1k to 10k items, peak RSS 1.03x). An
item that cannot be used (missing from the store, not a decodable image) is recorded as skipped with
its reason and the run goes on; only when more than
``max_failure_fraction`` of the items fail does the run fail. An item whose bytes do not match the
sha256 its manifest promised is not a bad image but a damaged store: the run fails with DATA_LOSS
(DESIGN.md, rule 2: a hash that does not match is an error, never a warning). The output lives
under a content address of (input items, pipeline, config, seed, augmentation, splits) and its
manifest is written last; the service's ``preprocess`` job (``preprocess_job``) reattaches an
identical finished run by the job framework's completion marker.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from skingenbench.services.core.errors import (
    DataIntegrityError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from skingenbench.services.core.hashing import content_address, output_prefix
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
from skingenbench.services.core.manifest_stream import StreamedManifest
from skingenbench.services.platform.manifest_io import open_manifest, read_item
from skingenbench.services.platform.store import ObjectStore
from skingenbench.services.preprocessing.manifest_spool import ManifestSpool

STAGE = "preprocess"
STAGE_VERSION = "2"  # 2: centre crop before cleaning, no mask dilation, lesion mask at 128 px (issue 20)
# PreprocessRequest.max_failure_fraction when the request does not set it (the field has presence, so an
# explicit 0 means "no failures allowed").
DEFAULT_MAX_FAILURE_FRACTION = 0.05


@dataclass(frozen=True)
class PreprocessSpec:
    """What to run: a registered pipeline, its profile and overrides, and the selection of items."""

    pipeline: str
    profile: str = "paper"
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    augment_copies: int = 0
    splits: tuple[str, ...] = ()
    max_failure_fraction: float = DEFAULT_MAX_FAILURE_FRACTION

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
    processed: int
    skipped: int


# -- the worker side: pipelines built once per worker process and kept ----------------------------
_worker_pipelines: dict[str, Any] = {}


def _worker_setup() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would oversubscribe


def _pipeline_for(pipeline: tuple[str, str, str]):
    """The worker's pipeline for (name, profile, overrides as JSON), built on first use."""
    key = "\x00".join(pipeline)
    if key not in _worker_pipelines:
        import json

        from skingenbench.services.preprocessing.core.pipeline_registry import create_pipeline

        name, profile, overrides = pipeline
        _worker_pipelines[key] = create_pipeline(name, profile, **json.loads(overrides))
    return _worker_pipelines[key]


def process_one(
    data: bytes, seeds: list[tuple[int, bool]], pipeline: tuple[str, str, str]
) -> list[tuple[bytes, bytes, dict[str, Any]]] | str:
    """Decode and run the pipeline for each (seed, augment) variant; a string is a skip reason."""
    from skingenbench.services.core.imaging.decoding import (
        ImageDecodeError,
        decode_image,
        encode_mask_png,
        encode_png,
    )

    run = _pipeline_for(pipeline)
    try:
        rgb = decode_image(data)
    except ImageDecodeError as exc:
        return f"{exc.reason}: {exc.message}"
    outputs = []
    for seed, augment in seeds:
        result = run(rgb, seed=seed, augment=augment)
        outputs.append((encode_png(result.image), encode_mask_png(result.lesion_mask), result.measurements))
    return outputs


# -- the parent side ---------------------------------------------------------------------------------
def _variants(spec: PreprocessSpec, index: int) -> list[tuple[int, bool]]:
    from skingenbench.services.preprocessing.core.geometry import image_seed

    base = [(image_seed(spec.seed, index), False)]
    return base + [(image_seed(spec.seed + 1 + copy, index), True) for copy in range(spec.augment_copies)]


def output_location(
    input_manifest: Manifest | StreamedManifest, spec: PreprocessSpec, config: dict[str, Any]
) -> str:
    """The content address of a run: the input's items, the pipeline and its config, the selection, the seed.

    ``max_failure_fraction`` and ``workers`` are not part of it: they do not change what is written.
    """
    address = content_address(
        STAGE,
        STAGE_VERSION,
        [input_manifest.content_hash()],
        {
            "pipeline": spec.pipeline,
            "config": config,
            "augment_copies": spec.augment_copies,
            "splits": sorted(spec.splits),
        },
        spec.seed,
    )
    return output_prefix(f"{STAGE}-{spec.pipeline}", address)


def select_items(source: Manifest | StreamedManifest, spec: PreprocessSpec) -> Iterator[Item]:
    """The items the spec's splits select, in manifest order, one at a time."""
    return (item for item in source.iter_items() if not spec.splits or item.split in spec.splits)


def count_selected(source: Manifest | StreamedManifest, spec: PreprocessSpec) -> int:
    return sum(n for (_, split, _), n in source.counts().items() if not spec.splits or split in spec.splits)


@dataclass(frozen=True)
class BatchTarget:
    """What a run over a manifest will write: where, with which resolved config, for how many items."""

    prefix: str
    config: dict[str, Any]
    selected: int


def plan_batch(source: Manifest | StreamedManifest, spec: PreprocessSpec, source_uri: str) -> BatchTarget:
    """Check a spec against its input manifest and address the run; raises what a request gets refused with."""
    from skingenbench.services.preprocessing.core.pipeline_registry import pipeline_config

    spec.validate()
    config = pipeline_config(spec.pipeline, spec.profile, **spec.overrides).to_dict()
    selected = count_selected(source, spec)
    if not selected:
        raise FailedPrecondition(f"no items to process in {source_uri} (splits {list(spec.splits) or 'all'})")
    return BatchTarget(output_location(source, spec, config), config, selected)


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
    """Process every selected item of a manifest; returns the output manifest's reference.

    The CLI's entry point: it computes everything afresh. The service's ``preprocess`` job plans once
    (:func:`plan_batch`) and reattaches an identical finished run instead. The input manifest is read
    one item at a time (``open_manifest``), so memory does not grow with its size.
    """
    with open_manifest(store, input_uri, input_sha256) as source:
        target = plan_batch(source, spec, input_uri)
        parent = ParentRef(store.uri(store.key_from_uri(input_uri)), input_sha256)
        return run_batch(
            store, source, parent, spec, target, workers=workers, progress=progress, should_stop=should_stop
        )


def run_batch(
    store: ObjectStore,
    source: Manifest | StreamedManifest,
    parent: ParentRef,
    spec: PreprocessSpec,
    target: BatchTarget,
    *,
    workers: int = 0,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], None] | None = None,
) -> PreprocessOutcome:
    """Run a planned batch: every selected item, its outputs, then the manifest (last). Items stream
    from ``source`` and their records to a spool on disk: neither list is held in memory."""
    prefix = target.prefix
    workers = workers or usable_cpus()
    skipped: list[Skipped] = []
    started = time.perf_counter()
    with ManifestSpool() as spool:
        selected = _process_into(
            store,
            select_items(source, spec),
            target.selected,
            spec,
            prefix,
            workers,
            spool,
            skipped,
            started,
            progress,
            should_stop,
        )
        check_failures(len(skipped), selected, spec.max_failure_fraction, skipped)
        ref = spool.write(
            store,
            f"{prefix}/{MANIFEST_NAME}",
            name=f"{source.name or 'data'}-{spec.pipeline}",
            provenance=Provenance(
                stage=f"{STAGE}:{spec.pipeline}",
                stage_version=STAGE_VERSION,
                config={
                    "pipeline": spec.pipeline,
                    "profile": spec.profile,
                    "config": target.config,
                    "augment_copies": spec.augment_copies,
                    "splits": list(spec.splits),
                },
                seed=spec.seed,
                parents=[parent],
            ),
            skipped=list(source.skipped) + skipped,
            extra={"pipeline": spec.pipeline, "selected": selected, "failed": len(skipped)},
        )
    return PreprocessOutcome(ref, spool.count, len(skipped))


def _process_into(
    store: ObjectStore,
    items: Iterable[Item],
    total: int,
    spec: PreprocessSpec,
    prefix: str,
    workers: int,
    spool: ManifestSpool,
    skipped: list[Skipped],
    started: float,
    progress: Callable[[int, int, dict[str, float]], None] | None,
    should_stop: Callable[[], None] | None,
) -> int:
    """Every item through the pool; its outputs are stored and its records spooled as it finishes.
    Returns how many items there were (``total`` is the plan's count, for progress)."""
    pool = _executor(workers)
    done = 0
    for done, (item, outcome) in enumerate(_bounded_map(pool, store, items, spec, workers * 4), 1):
        if should_stop is not None:
            should_stop()
        if isinstance(outcome, str):
            skipped.append(Skipped(item.key, outcome))
        else:
            for produced in _store_outputs(store, prefix, item, outcome):
                spool.add(produced)
        if progress is not None and (done % 16 == 0 or done == total):
            elapsed = time.perf_counter() - started
            progress(
                done,
                total,
                {"images_per_s": done / elapsed if elapsed else 0.0, "skipped": float(len(skipped))},
            )
    return done


def check_failures(failed: int, selected: int, max_failure_fraction: float, skipped: list[Skipped]) -> None:
    """Refuse a run where more than ``max_failure_fraction`` of the selected items could not be processed."""
    fraction = failed / max(1, selected)
    if fraction > max_failure_fraction:
        examples = "; ".join(f"{s.ref}: {s.reason}" for s in skipped[:3])
        raise FailedPrecondition(
            f"{failed} of {selected} items could not be processed "
            f"({fraction:.1%} > max_failure_fraction {max_failure_fraction:.1%})"
            + (f": {examples}" if examples else ""),
            hint="fix or drop the broken items, or raise max_failure_fraction",
        )


class _InProcess:
    """The executor interface, run in this process: one worker needs no pool."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future


_shared_pool: ProcessPoolExecutor | None = None
_shared_pool_size = 0
_shared_pool_lock = threading.Lock()


def usable_cpus() -> int:
    """CPUs this process may use: the container's CPU quota and affinity (``core/cpu_limit.py``)."""
    from skingenbench.services.core.cpu_limit import usable_cpu_count

    return usable_cpu_count()


def _executor(workers: int) -> ProcessPoolExecutor | _InProcess:
    """One worker runs in this process; more share one long-lived pool of the size asked for.

    A pool per job paid the spawn and the imports of every worker each time (two workers used 23% more
    CPU per image than one on short jobs); a kept pool pays them once per service process. Workers keep
    each pipeline they have built, so jobs with different pipelines share the pool too. "spawn", not fork:
    the parent runs gRPC and OpenCV thread pools, and a forked child inherits their locks in whatever
    state they were (a known deadlock with both libraries).
    """
    global _shared_pool, _shared_pool_size
    if workers == 1:
        _worker_setup()
        return _InProcess()
    with _shared_pool_lock:
        if _shared_pool is None or _shared_pool_size != workers or getattr(_shared_pool, "_broken", False):
            if _shared_pool is not None:
                _shared_pool.shutdown(wait=False, cancel_futures=True)
            _shared_pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_setup,
            )
            _shared_pool_size = workers
        return _shared_pool


def _bounded_map(
    pool: ProcessPoolExecutor | _InProcess,
    store: ObjectStore,
    items: Iterable[Item],
    spec: PreprocessSpec,
    window: int,
) -> Iterator[tuple[Item, Any]]:
    """Submit items as earlier ones finish, keeping at most ``window`` in flight, in input order.
    Items still queued when the run stops (cancelled, failed) are cancelled: the pool outlives the run."""
    pending: deque[tuple[Item, Future | str]] = deque()
    try:
        yield from _submit_in_order(pool, store, items, spec, window, pending)
    finally:
        for _, outcome in pending:
            if isinstance(outcome, Future):
                outcome.cancel()


def _submit_in_order(
    pool: ProcessPoolExecutor | _InProcess,
    store: ObjectStore,
    items: Iterable[Item],
    spec: PreprocessSpec,
    window: int,
    pending: deque[tuple[Item, Future | str]],
) -> Iterator[tuple[Item, Any]]:
    pipeline = (spec.pipeline, spec.profile, json.dumps(spec.overrides, sort_keys=True))
    for index, item in enumerate(items):
        try:
            data = read_item(store, item)
        except NotFound as exc:
            pending.append((item, f"unreadable: {exc}"))
        except DataIntegrityError as exc:
            # Not skipped: a mismatch means the store lost data, which no tolerance may hide.
            raise DataIntegrityError(
                exc.message,
                hint="the stored object was changed or damaged; restore it or re-import the data set",
                key=item.key,
            ) from None
        else:
            pending.append((item, pool.submit(process_one, data, _variants(spec, index), pipeline)))
        while len(pending) >= window:
            yield _resolve(*pending.popleft())
    while pending:
        yield _resolve(*pending.popleft())


def _resolve(item: Item, outcome: Future | str) -> tuple[Item, Any]:
    return item, outcome if isinstance(outcome, str) else outcome.result()


def _store_outputs(
    store: ObjectStore, prefix: str, item: Item, variants: list[tuple[bytes, bytes, dict[str, Any]]]
) -> list[Item]:
    stem = item.image_id or item.key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    produced = []
    for copy, (png, mask_png, measurements) in enumerate(variants):
        name = stem if copy == 0 else f"{stem}_aug{copy}"
        image = store.put_bytes(f"{prefix}/images/{name}.png", png, "image/png")
        mask = store.put_bytes(f"{prefix}/masks/lesion/{name}.png", mask_png, "image/png")
        meta = {**item.meta, **measurements, "parent_key": item.key}
        if copy:
            meta["augmented_from"] = item.image_id
        produced.append(
            Item(
                key=image.key,
                sha256=image.sha256,
                label=item.label,
                lesion_id=item.lesion_id,
                split=item.split,
                source=item.source,
                image_id=name,
                meta=meta,
                objects={"mask_lesion": ObjectEntry(mask.key, mask.sha256)},
            )
        )
    return produced
