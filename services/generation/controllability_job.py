"""The ``controllability`` job: does a conditional generator honour what it is asked for?

The measurement itself is ``dermgan.controllability`` (pure: render, measure with the preprocessing
stage's own tools, compare). This module is the service's side of it: the request is checked before a
job exists, the images are written to the store as they are drawn (so an interrupted job keeps them
and a re-run finds them), and the outputs follow the house order -- PNGs, then the reports, then the
manifest last. The manifest's items carry the requested class as their label, so the evaluation
service's class anchoring (``per_item_labels``) can say whether a real-data classifier sees the class
each image was asked to show.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.errors import Cancelled, FailedPrecondition, InvalidArgument
from skingenbench.services.core.hashing import content_address, output_prefix, sha256_bytes
from skingenbench.services.core.imaging.decoding import decode_image
from skingenbench.services.core.manifest import (
    MANIFEST_NAME,
    Item,
    Manifest,
    ManifestRef,
    ParentRef,
    Provenance,
)
from skingenbench.services.generation import models
from skingenbench.services.generation.core.backend import SamplerOptions, check_seeds
from skingenbench.services.generation.core.dermgan import controllability
from skingenbench.services.generation.core.dermgan.semantic_map import MapParams
from skingenbench.services.generation.core.registry import GENERATORS
from skingenbench.services.generation.core.sampling import to_png_bytes
from skingenbench.services.generation.sampling_job import resolve_sampler, sampler_options
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.manifest_io import write_manifest
from skingenbench.services.platform.store import ObjectStore

STAGE, VERSION = "controllability", "1"
MAX_IMAGES = 10_000  # a grid beyond this is a mistake in the request, not a measurement


@dataclass
class ControllabilityPlan:
    record: models.ModelRecord
    requests: list[MapParams]
    seed: int
    options: SamplerOptions
    grid: dict[str, Any]  # the request's axes after defaults, as recorded in the report


def _numbers(values: list[Any], default: tuple[float, ...], field: str, low: float, high: float,
             low_open: bool = True) -> list[float]:
    values = [float(v) for v in values] or list(default)
    for value in values:
        inside = (low < value if low_open else low <= value) and value <= high
        if not math.isfinite(value) or not inside:
            raise InvalidArgument(f"{field}: {value} is outside {'(' if low_open else '['}{low}, {high}]",
                                  field=field)
    return sorted(set(values))


def plan_controllability(store: ObjectStore, request: dict[str, Any]) -> ControllabilityPlan:
    """Validate a ControllabilityRequest (as a dict) completely; every refusal happens here."""
    record = models.resolve_model(store, request.get("model_uri", ""))
    capability = GENERATORS.get(record.generator).capabilities.get("conditional")
    if capability != "true":
        raise FailedPrecondition(f"{record.generator} draws no lesion of a requested size, centre or skin tone; "
                                 "controllability applies to conditional generators",
                                 hint="train a dermgan model")
    labels = sorted(set(request.get("labels") or record.classes))
    unknown = [label for label in labels if label not in CLASSES]
    if unknown:
        raise InvalidArgument(f"unknown class(es) {', '.join(unknown)}", field="labels",
                              hint=f"one of: {', '.join(CLASSES)}")
    unseen = [label for label in labels if label not in record.classes]
    if unseen:
        raise InvalidArgument(f"the model was trained on {', '.join(record.classes)}, not {', '.join(unseen)}",
                              field="labels", hint="ask only for classes the model learnt")
    areas = _numbers(request.get("lesion_area_fractions") or [], controllability.DEFAULT_AREAS,
                     "lesion_area_fractions", 0.0, 0.95)
    itas = _numbers(request.get("ita_degrees") or [], controllability.DEFAULT_ITAS, "ita_degrees", -90.0, 90.0)
    centres = [(float(c.get("x", 0.0)), float(c.get("y", 0.0))) for c in request.get("centres") or []]
    centres = centres or list(controllability.DEFAULT_CENTRES)
    for x, y in centres:
        _numbers([x, y], (), "centres", 0.0, 1.0, low_open=False)
    repeats = int(request.get("repeats") or controllability.DEFAULT_REPEATS)
    if not 1 <= repeats <= 1000:
        raise InvalidArgument(f"repeats must be in 1..1000, got {repeats}", field="repeats")
    requests = controllability.grid(labels, areas, itas, centres, repeats)
    for params in requests[::repeats]:  # each combination once; MapParams knows its open bounds
        params.validate()
    if len(requests) > MAX_IMAGES:
        raise InvalidArgument(f"the grid asks for {len(requests)} images; at most {MAX_IMAGES}",
                              hint="fewer sizes, tones, centres or repeats")
    seed = int(request.get("seed", 0))
    check_seeds([seed, seed + len(requests) - 1])
    grid = {"labels": labels, "lesion_area_fractions": areas, "ita_degrees": itas,
            "centres": [list(c) for c in centres], "repeats": repeats}
    return ControllabilityPlan(record, requests, seed, sampler_options(request.get("sampler")), grid)


def controllability_job(cache: models.BackendCache):
    """The ``controllability`` handler, sharing the servicer's cache of loaded models."""

    def handler(request: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        store = ctx.store
        plan = plan_controllability(store, request)
        record = plan.record
        backend = cache.get(record)
        options = resolve_sampler(backend, plan.options)
        settings = dataclasses.asdict(options)
        address = content_address(STAGE, VERSION, [record.checkpoint["sha256"]],
                                  {"requests": [p.to_dict() for p in plan.requests], "sampler": settings}, plan.seed)
        prefix = output_prefix(f"{STAGE}/{record.generator}", address)
        keys = {name: f"{prefix}/{file}" for name, file in
                (("manifest", MANIFEST_NAME), ("report_json", "report.json"), ("report_md", "report.md"),
                 ("montage", "montage.png"))}
        if store.exists(keys["manifest"]):  # finished before: the outputs are what they were
            hashes = {name: sha256_bytes(store.get_bytes(key)) for name, key in keys.items()}
            _add_outputs(ctx, store, keys, hashes)
            report = json.loads(store.get_bytes(keys["report_json"]))
            return _summary(report["attributes"], len(plan.requests), store.uri(record.key), True)

        image_hashes: dict[int, str] = {}
        cells = _montage_cells(plan.requests, plan.seed)
        tiles: dict[tuple[int, int], np.ndarray] = {}  # the few montage images, kept as they are drawn

        def render(seeds: list[int], params: list[MapParams]) -> np.ndarray:
            image_keys = [f"{prefix}/images/seed-{s}.png" for s in seeds]
            if all(store.exists(k) for k in image_keys):  # drawn before an interruption: same seeds, same bytes
                pngs = [store.get_bytes(k) for k in image_keys]
                image_hashes.update({s: sha256_bytes(png) for s, png in zip(seeds, pngs, strict=True)})
                images = np.stack([decode_image(png) for png in pngs])
            else:
                images = backend.sample(seeds, options, [p.to_dict() for p in params])
                for s, key, image in zip(seeds, image_keys, images, strict=True):
                    image_hashes[s] = store.put_bytes(key, to_png_bytes(image), "image/png").sha256
            tiles.update({cells[s]: image for s, image in zip(seeds, images, strict=True) if s in cells})
            return images

        def on_batch(done: int, total: int) -> None:
            ctx.progress(done, total, "generating and measuring")
            if ctx.should_stop:
                ctx.check_cancelled()
                raise Cancelled("controllability stopped")

        report = controllability.measure_controllability(render, plan.requests, plan.seed,
                                                         batch_size=options.batch_size, on_batch=on_batch)
        document = {**report.to_dict(), "grid": plan.grid, "sampler": settings, "seed": plan.seed,
                    "model_uri": store.uri(record.key), "by_requested_tone": controllability.by_requested_tone(report)}
        title = f"Controllability of {record.generator} `{record.name or record.model_id}`"
        written = {
            "report_json": store.put_bytes(keys["report_json"], json.dumps(document, indent=1, sort_keys=True).encode(),
                                           "application/json").sha256,
            "report_md": store.put_bytes(keys["report_md"], controllability.report_markdown(report, title).encode(),
                                         "text/markdown").sha256,
            "montage": store.put_bytes(keys["montage"], to_png_bytes(_montage(tiles)), "image/png").sha256,
        }
        written["manifest"] = _write_manifest(store, keys["manifest"], plan, report, image_hashes, settings).sha256
        _add_outputs(ctx, store, keys, written)
        return _summary(document["attributes"], len(plan.requests), store.uri(record.key), False)

    return handler


def _montage_cells(requests: list[MapParams], seed: int) -> dict[int, tuple[int, int]]:
    """Seed -> (row, column) of the montage: one image per (requested tone, size) for the first class and centre,
    rows dark to light skin, columns small to large lesions -- what the tables say, at a glance."""
    first = requests[0]
    chosen: dict[tuple[float, float], int] = {}
    for index, asked in enumerate(requests):
        if (asked.label, asked.center_x, asked.center_y) == (first.label, first.center_x, first.center_y):
            chosen.setdefault((asked.ita_degrees, asked.lesion_area_fraction), seed + index)
    tones = sorted({tone for tone, _ in chosen})
    sizes = sorted({size for _, size in chosen})
    return {image_seed: (tones.index(tone), sizes.index(size)) for (tone, size), image_seed in chosen.items()}


def _montage(tiles: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    rows, columns = (1 + max(cell[axis] for cell in tiles) for axis in (0, 1))
    side = next(iter(tiles.values())).shape[0]
    canvas = np.full((rows * (side + 2), columns * (side + 2), 3), 255, np.uint8)
    for (row, column), image in tiles.items():
        top, left = row * (side + 2), column * (side + 2)
        canvas[top:top + side, left:left + side] = image
    return canvas


def _write_manifest(store: ObjectStore, key: str, plan: ControllabilityPlan,
                    report: controllability.ControllabilityReport, hashes: dict[int, str],
                    settings: dict[str, Any]) -> ManifestRef:
    record = plan.record
    model_uri, checkpoint_uri = store.uri(record.key), store.uri(record.checkpoint["key"])
    prefix = key.rsplit("/", 1)[0]
    items = [Item(key=f"{prefix}/images/seed-{row['seed']}.png", sha256=hashes[row["seed"]],
                  label=row["requested"]["label"], lesion_id=f"synthetic-{record.model_id}-{row['seed']}",
                  split="train", source=record.generator, image_id=f"{record.model_id}-ctrl-{row['seed']}",
                  meta={"synthetic": True, "seed": row["seed"], "conditioning": row["requested"],
                        "measured": controllability.json_safe(row["measured"]), **settings,
                        "model_uri": model_uri, "checkpoint_uri": checkpoint_uri})
             for row in report.rows]
    provenance = Provenance(stage=f"{STAGE}:{record.generator}", stage_version=VERSION, seed=plan.seed,
                            config={"grid": plan.grid, "sampler": settings, "model_uri": model_uri},
                            parents=[ParentRef(model_uri, record.sha256)])
    return write_manifest(store, key, Manifest(items, provenance, name=f"controllability-{record.model_id}",
                                        extra={"synthetic": True, "model_uri": model_uri}))


def _add_outputs(ctx: JobContext, store: ObjectStore, keys: dict[str, str], hashes: dict[str, str]) -> None:
    for name in ("report_json", "report_md", "montage", "manifest"):
        ctx.add_output(name, store.uri(keys[name]), hashes[name])


def _summary(attributes: dict[str, Any], count: int, model_uri: str, reused: bool) -> dict[str, Any]:
    """The job's result: per attribute the mean absolute error and Pearson's r (null where undefined)."""
    summary: dict[str, Any] = {"item_count": count, "model_uri": model_uri, "reused_output": reused}
    for name, agreement in attributes.items():
        summary[f"{name}_mae"] = agreement["mean_absolute_error"]
        summary[f"{name}_pearson"] = agreement["pearson"]
    return summary
