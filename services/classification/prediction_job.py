"""The classification service's ``predict`` job: a checkpoint's class probabilities for the items of a
manifest (all of it, or the named splits), as JSON with each item's key, label and split, and as a CSV.

Unlike the test job it computes no metrics and checks no labels, so any items will do: it is how other
tools (the evaluation service's class anchoring) get a trained classifier's predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.classification.inference import predict_items
from services.classification.job_store import (
    finish_job,
    job_prefix,
    load_checkpoint,
    predicting_progress,
    put_bytes,
    put_json,
    reuse_outputs,
)
from services.classification.predictions_csv import write_predictions_csv
from services.classification.request_checks import count_field, manifest_from_ref
from services.common.classes import CLASSES
from services.common.device import select_device
from services.common.errors import FailedPrecondition
from services.common.jobs import JobContext

MAX_BATCH = 4096


def predict_job(request: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    data = manifest_from_ref(ctx.store, request.get("data"), "data manifest")
    splits = sorted(set(request.get("splits", [])))
    batch_size = count_field(request, "batch_size", MAX_BATCH)
    model, config, meta, checkpoint_sha = load_checkpoint(ctx, request.get("checkpoint_uri", ""))
    items = [item for item in data.items if not splits or item.split in splits]
    if not items:
        raise FailedPrecondition(f"no items in splits {splits} of the data manifest")
    prefix = job_prefix("classifier-predict", [checkpoint_sha, data.content_hash()], {"splits": splits})
    reused = reuse_outputs(ctx, prefix)
    if reused is not None:
        return reused
    ids, labels, probs = predict_items(model, config, ctx.store, items, select_device(), batch_size,
                                       on_batch=predicting_progress(ctx))
    rows = [{"image_id": i, "key": item.key, "label": label, "split": item.split, "source": item.source,
             "predicted": CLASSES[int(np.argmax(row))], "probs": [float(v) for v in row]}
            for i, item, label, row in zip(ids, items, labels, probs, strict=True)]
    document = {"classes": list(CLASSES), "classifier": meta["classifier"],
                "run_name": meta.get("run_name", ""),
                "checkpoint": {"uri": request["checkpoint_uri"], "sha256": checkpoint_sha},
                "data": request["data"], "items": rows}
    csv = write_predictions_csv(ids, probs, CLASSES).encode()
    outputs = {"predictions_json": put_json(ctx.store, f"{prefix}/predictions.json", document),
               "predictions_csv": put_bytes(ctx.store, f"{prefix}/predictions.csv", csv, "text/csv")}
    return finish_job(ctx, prefix, outputs, {"n": len(ids), "splits": splits})
