"""The ``controllability`` job kind: does a conditional generator honour what it is asked for?

The measurement itself is ``dermgan.controllability`` (pure: render, measure with the preprocessing
stage's own tools, compare). This module is the service's side of it: the request is checked once, at
Start (the model, the classes, the grid's bounds and size, the seeds, the sampler), the images are written
to the store as they are drawn (so an interrupted job keeps them and a re-run finds them), and the outputs
follow the house order -- PNGs, then the reports, then the manifest; the framework's completion marker
comes last. The manifest's items carry the requested class as their label, so the evaluation service's
class anchoring (``per_item_labels``) can say whether a real-data classifier sees the class each image was
asked to show.
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
from skingenbench.services.generation.sampling_job import resolve_sampler, sampler_options, unbuilt_backend
from skingenbench.services.platform.job_kind import JobKind, JobOutputs, JobPlan, ObjectRef
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.manifest_io import write_manifest
from skingenbench.services.platform.servicer import request_to_dict
from skingenbench.services.platform.store import ObjectStore

from skingenbench.api.v1 import generation_pb2

STAGE, VERSION = "controllability", "1"
MAX_IMAGES = 10_000  # a grid beyond this is a mistake in the request, not a measurement
OUTPUT_FILES = (
    ("report_json", "report.json"),
    ("report_md", "report.md"),
    ("montage", "montage.png"),
    ("manifest", MANIFEST_NAME),
)


@dataclass(frozen=True)
class ControllabilityPlan(JobPlan):
    model: ObjectRef  # the model record, pinned by the sha256 of its bytes at Start
    labels: tuple[str, ...]  # the grid's axes after defaults (the grid itself is rebuilt
    lesion_area_fractions: tuple[float, ...]  # from them: up to MAX_IMAGES requests stay out of the plan)
    ita_degrees: tuple[float, ...]
    centres: tuple[tuple[float, float], ...]
    repeats: int
    seed: int
    sampler: SamplerOptions  # defaults resolved

    def requests(self) -> list[MapParams]:
        """One semantic-map request per image; image i has seed ``seed + i``."""
        return controllability.grid(
            self.labels, self.lesion_area_fractions, self.ita_degrees, self.centres, self.repeats
        )

    def grid(self) -> dict[str, Any]:
        """The axes as the report records them."""
        return {
            "labels": list(self.labels),
            "lesion_area_fractions": list(self.lesion_area_fractions),
            "ita_degrees": list(self.ita_degrees),
            "centres": [list(c) for c in self.centres],
            "repeats": self.repeats,
        }


def _numbers(
    values: list[Any], default: tuple[float, ...], field: str, low: float, high: float, low_open: bool = True
) -> list[float]:
    values = [float(v) for v in values] or list(default)
    for value in values:
        inside = (low < value if low_open else low <= value) and value <= high
        if not math.isfinite(value) or not inside:
            raise InvalidArgument(
                f"{field}: {value} is outside {'(' if low_open else '['}{low}, {high}]", field=field
            )
    return sorted(set(values))


class ControllabilityKind(JobKind[generation_pb2.ControllabilityRequest, ControllabilityPlan]):
    """StartControllability: a grid of requested class, size, centre and tone, drawn and measured."""

    name = "controllability"
    stage = STAGE
    version = VERSION
    request_type = generation_pb2.ControllabilityRequest
    plan_type = ControllabilityPlan

    def __init__(self, cache: models.BackendCache) -> None:
        self.cache = cache  # shared with Generate: a model loaded once serves both

    def plan(self, request: generation_pb2.ControllabilityRequest, store: ObjectStore) -> ControllabilityPlan:
        record = models.resolve_model(store, request.model_uri)
        if GENERATORS.get(record.generator).capabilities.get("conditional") != "true":
            raise FailedPrecondition(
                f"{record.generator} draws no lesion of a requested size, centre or skin "
                "tone; controllability applies to conditional generators",
                hint="train a dermgan model",
            )
        labels = sorted(set(request.labels or record.classes))
        unknown = [label for label in labels if label not in CLASSES]
        if unknown:
            raise InvalidArgument(
                f"unknown class(es) {', '.join(unknown)}",
                field="labels",
                hint=f"one of: {', '.join(CLASSES)}",
            )
        unseen = [label for label in labels if label not in record.classes]
        if unseen:
            raise InvalidArgument(
                f"the model was trained on {', '.join(record.classes)}, not {', '.join(unseen)}",
                field="labels",
                hint="ask only for classes the model learnt",
            )
        areas = _numbers(
            list(request.lesion_area_fractions),
            controllability.DEFAULT_AREAS,
            "lesion_area_fractions",
            0.0,
            0.95,
        )
        itas = _numbers(list(request.ita_degrees), controllability.DEFAULT_ITAS, "ita_degrees", -90.0, 90.0)
        centres = [(float(c.x), float(c.y)) for c in request.centres] or list(controllability.DEFAULT_CENTRES)
        for x, y in centres:
            _numbers([x, y], (), "centres", 0.0, 1.0, low_open=False)
        repeats = int(request.repeats or controllability.DEFAULT_REPEATS)
        if not 1 <= repeats <= 1000:
            raise InvalidArgument(f"repeats must be in 1..1000, got {repeats}", field="repeats")
        requests = controllability.grid(labels, areas, itas, centres, repeats)
        for params in requests[::repeats]:  # each combination once; MapParams knows its open bounds
            params.validate()
        if len(requests) > MAX_IMAGES:
            raise InvalidArgument(
                f"the grid asks for {len(requests)} images; at most {MAX_IMAGES}",
                hint="fewer sizes, tones, centres or repeats",
            )
        seed = int(request.seed)
        check_seeds([seed, seed + len(requests) - 1])
        options = resolve_sampler(
            unbuilt_backend(store, record), sampler_options(request_to_dict(request.sampler))
        )
        address = content_address(
            STAGE,
            VERSION,
            [record.checkpoint["sha256"]],
            {"requests": [p.to_dict() for p in requests], "sampler": dataclasses.asdict(options)},
            seed,
        )
        return ControllabilityPlan(
            output_prefix(f"{STAGE}/{record.generator}", address),
            ObjectRef(store.uri(record.key), record.sha256),
            tuple(labels),
            tuple(areas),
            tuple(itas),
            tuple(centres),
            repeats,
            seed,
            options,
        )

    def run(self, plan: ControllabilityPlan, ctx: JobContext) -> JobOutputs:
        store = ctx.store
        record = models.read_record(store, plan.model.uri, plan.model.sha256)
        backend = self.cache.get(record)
        options, settings, requests = plan.sampler, dataclasses.asdict(plan.sampler), plan.requests()
        keys = {name: f"{plan.output_prefix}/{file}" for name, file in OUTPUT_FILES}
        image_hashes: dict[int, str] = {}
        cells = _montage_cells(requests, plan.seed)
        tiles: dict[tuple[int, int], np.ndarray] = {}  # the few montage images, kept as they are drawn

        def render(seeds: list[int], params: list[MapParams]) -> np.ndarray:
            image_keys = [f"{plan.output_prefix}/images/seed-{s}.png" for s in seeds]
            if all(
                store.exists(k) for k in image_keys
            ):  # drawn before an interruption: same seeds, same bytes
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

        report = controllability.measure_controllability(
            render, requests, plan.seed, batch_size=options.batch_size, on_batch=on_batch
        )
        model_uri = store.uri(record.key)
        document = {
            **report.to_dict(),
            "grid": plan.grid(),
            "sampler": settings,
            "seed": plan.seed,
            "model_uri": model_uri,
            "by_requested_tone": controllability.by_requested_tone(report),
        }
        title = f"Controllability of {record.generator} `{record.name or record.model_id}`"
        written = {
            "report_json": store.put_bytes(
                keys["report_json"],
                json.dumps(document, indent=1, sort_keys=True).encode(),
                "application/json",
            ).sha256,
            "report_md": store.put_bytes(
                keys["report_md"], controllability.report_markdown(report, title).encode(), "text/markdown"
            ).sha256,
            "montage": store.put_bytes(keys["montage"], to_png_bytes(_montage(tiles)), "image/png").sha256,
        }
        written["manifest"] = _write_manifest(
            store, keys["manifest"], plan, record, report, image_hashes, settings
        ).sha256
        outputs = JobOutputs(summary=_summary(document["attributes"], len(requests), model_uri))
        for name, _ in OUTPUT_FILES:
            outputs.add(name, store.uri(keys[name]), written[name])
        return outputs


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
        canvas[top : top + side, left : left + side] = image
    return canvas


def _write_manifest(
    store: ObjectStore,
    key: str,
    plan: ControllabilityPlan,
    record: models.ModelRecord,
    report: controllability.ControllabilityReport,
    hashes: dict[int, str],
    settings: dict[str, Any],
) -> ManifestRef:
    model_uri, checkpoint_uri = store.uri(record.key), store.uri(record.checkpoint["key"])
    prefix = key.rsplit("/", 1)[0]
    items = [
        Item(
            key=f"{prefix}/images/seed-{row['seed']}.png",
            sha256=hashes[row["seed"]],
            label=row["requested"]["label"],
            lesion_id=f"synthetic-{record.model_id}-{row['seed']}",
            split="train",
            source=record.generator,
            image_id=f"{record.model_id}-ctrl-{row['seed']}",
            meta={
                "synthetic": True,
                "seed": row["seed"],
                "conditioning": row["requested"],
                "measured": controllability.json_safe(row["measured"]),
                **settings,
                "model_uri": model_uri,
                "checkpoint_uri": checkpoint_uri,
            },
        )
        for row in report.rows
    ]
    provenance = Provenance(
        stage=f"{STAGE}:{record.generator}",
        stage_version=VERSION,
        seed=plan.seed,
        config={"grid": plan.grid(), "sampler": settings, "model_uri": model_uri},
        parents=[ParentRef(model_uri, record.sha256)],
    )
    return write_manifest(
        store,
        key,
        Manifest(
            items,
            provenance,
            name=f"controllability-{record.model_id}",
            extra={"synthetic": True, "model_uri": model_uri},
        ),
    )


def _summary(attributes: dict[str, Any], count: int, model_uri: str) -> dict[str, Any]:
    """The job's result: per attribute the mean absolute error and Pearson's r (null where undefined)."""
    summary: dict[str, Any] = {"item_count": count, "model_uri": model_uri, "reused_output": False}
    for name, agreement in attributes.items():
        summary[f"{name}_mae"] = agreement["mean_absolute_error"]
        summary[f"{name}_pearson"] = agreement["pearson"]
    return summary
