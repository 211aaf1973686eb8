"""The classification service's ``gradcam`` job: Grad-CAM overlays of a checkpoint on items of one split,
written as PNGs with a manifest whose items point back at the images they explain.

The core (``gradcam.py``) picks the layer and draws the overlays; this job chooses the items (the first
``count`` of the requested labels in manifest order), writes the images and records per overlay the
explained class, its probability and the parent item.
"""

from __future__ import annotations

from typing import Any

from skingenbench.services.classification.core import data as data_core
from skingenbench.services.classification.core.inference import item_names
from skingenbench.services.classification.job_store import (
    STAGE_VERSION,
    finish_job,
    job_prefix,
    load_checkpoint,
    reuse_outputs,
)
from skingenbench.services.classification.request_checks import count_field, manifest_from_ref, split_name
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.device import select_device
from skingenbench.services.core.errors import FailedPrecondition
from skingenbench.services.core.manifest import Item, Manifest, ParentRef, Provenance
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.manifest_io import read_item, write_manifest

DEFAULT_GRADCAM_COUNT = 8
MAX_GRADCAM_COUNT = 256


def gradcam_job(request: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    from skingenbench.services.classification.core.gradcam import gradcam_overlays, target_layer
    from skingenbench.services.core.imaging.decoding import decode_image

    data = manifest_from_ref(ctx.store, request.get("data"), "data manifest")
    split = split_name(request.get("split", ""))
    count = count_field(request, "count", MAX_GRADCAM_COUNT) or DEFAULT_GRADCAM_COUNT
    labels = sorted(set(request.get("labels", [])) or set(CLASSES))
    model, config, meta, checkpoint_sha = load_checkpoint(ctx, request.get("checkpoint_uri", ""))
    layer, _ = target_layer(model, meta["classifier"], request.get("target_layer", ""))
    items = [item for item in data_core.split_items(data, split) if item.label in labels][:count]
    if not items:
        raise FailedPrecondition(f"no {split} items with labels {labels} in the data manifest")
    prefix = job_prefix("classifier-gradcam", [checkpoint_sha, data.content_hash()],
                        {"split": split, "count": count, "labels": labels, "layer": layer})
    reused = reuse_outputs(ctx, prefix)
    if reused is not None:
        return reused
    ctx.progress(0, len(items), "grad-cam")
    images = [decode_image(read_item(ctx.store, item)) for item in items]
    overlays = gradcam_overlays(model, meta["classifier"], config, images, layer, select_device())
    out_items = []
    for name, item, overlay in zip(item_names(items), items, overlays, strict=True):
        stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        info = ctx.store.put_bytes(f"{prefix}/overlays/{stem}.png", overlay.png, "image/png")
        out_items.append(Item(
            key=info.key, sha256=info.sha256, label=item.label, lesion_id=item.lesion_id, split=item.split,
            source=item.source, image_id=f"{stem}_gradcam",
            meta={"method": "gradcam", "target_layer": layer, "parent_key": item.key,
                  "explained_class": CLASSES[overlay.target_class],
                  "probability": float(overlay.probs[overlay.target_class])}))
    parents = [ParentRef(request["data"]["uri"], request["data"].get("sha256", "")),
               ParentRef(request["checkpoint_uri"], checkpoint_sha)]
    provenance = Provenance(stage="classifier-gradcam", stage_version=STAGE_VERSION, parents=parents,
                            config={"classifier": meta["classifier"], "layer": layer, "split": split})
    ref = write_manifest(ctx.store, f"{prefix}/manifest.json",
                         Manifest(out_items, provenance, name=f"gradcam-{meta['classifier']}"))
    return finish_job(ctx, prefix, {"manifest": (ref.uri, ref.sha256)},
                      {"overlays": len(out_items), "layer": layer})
