"""The classification service's ``predict`` job: a checkpoint's class probabilities for the items of a
manifest (all of it, or the named splits), as JSON with each item's key, label and split, and as a CSV.

Unlike the test job it computes no metrics and checks no labels, so any items will do: it is how other
tools (the evaluation service's class anchoring) get a trained classifier's predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skingenbench.services.classification.core.predictions_csv import write_predictions_csv
from skingenbench.services.classification.job_io import (
    STAGE_VERSION,
    load_pinned_checkpoint,
    predicting_progress,
    put_bytes,
    put_json,
)
from skingenbench.services.classification.manifest_images import predict_items
from skingenbench.services.classification.request_checks import (
    RequestedManifest,
    checkpoint_ref,
    requested_manifest,
)
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.device import select_device
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.platform.job_kind import JobKind, JobOutputs, JobPlan, ObjectRef
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.store import ObjectStore

from skingenbench.api.v1 import classification_pb2

MAX_BATCH = 4096


@dataclass(frozen=True)
class PredictPlan(JobPlan):
    checkpoint: ObjectRef  # the file's sha256, as read at Start
    data: RequestedManifest  # as requested (the document records it) and pinned: the run reads those bytes
    splits: tuple[str, ...]
    batch_size: int


class PredictKind(JobKind[classification_pb2.PredictRequest, PredictPlan]):
    name = "predict"
    stage = "classifier-predict"
    version = STAGE_VERSION
    request_type = classification_pb2.PredictRequest
    plan_type = PredictPlan

    def plan(self, request: classification_pb2.PredictRequest, store: ObjectStore) -> PredictPlan:
        if not 0 <= request.batch_size <= MAX_BATCH:
            raise InvalidArgument(f"batch_size must be in 0..{MAX_BATCH}, got {request.batch_size}")
        checkpoint, _ = checkpoint_ref(store, request.checkpoint_uri, request.checkpoint_sha256)
        manifest, data = requested_manifest(store, request.data, "data manifest")
        splits = tuple(sorted(set(request.splits)))
        if not any(not splits or item.split in splits for item in manifest.items):
            raise FailedPrecondition(f"no items in splits {list(splits)} of the data manifest")
        prefix = self.address([checkpoint.sha256, manifest.content_hash()], {"splits": list(splits)})
        return PredictPlan(prefix, checkpoint, data, splits, request.batch_size)

    def run(self, plan: PredictPlan, ctx: JobContext) -> JobOutputs:
        data = plan.data.read(ctx.store)
        items = [item for item in data.items if not plan.splits or item.split in plan.splits]
        model, config, meta = load_pinned_checkpoint(ctx, plan.checkpoint)
        ids, labels, probs = predict_items(
            model,
            config,
            ctx.store,
            items,
            select_device(),
            plan.batch_size,
            on_batch=predicting_progress(ctx),
        )
        rows = [
            {
                "image_id": i,
                "key": item.key,
                "label": label,
                "split": item.split,
                "source": item.source,
                "predicted": CLASSES[int(np.argmax(row))],
                "probs": [float(v) for v in row],
            }
            for i, item, label, row in zip(ids, items, labels, probs, strict=True)
        ]
        document = {
            "classes": list(CLASSES),
            "classifier": meta["classifier"],
            "run_name": meta.get("run_name", ""),
            "checkpoint": {"uri": plan.checkpoint.uri, "sha256": plan.checkpoint.sha256},
            "data": plan.data.as_request(),
            "items": rows,
        }
        csv = write_predictions_csv(ids, probs, CLASSES).encode()
        outputs = JobOutputs(summary={"n": len(ids), "splits": list(plan.splits)})
        outputs.add(
            "predictions_json", *put_json(ctx.store, f"{plan.output_prefix}/predictions.json", document)
        )
        outputs.add(
            "predictions_csv", *put_bytes(ctx.store, f"{plan.output_prefix}/predictions.csv", csv, "text/csv")
        )
        return outputs
