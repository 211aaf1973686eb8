"""The classification service's ``gradcam`` job: Grad-CAM overlays of a checkpoint on items of one split,
written as PNGs with a manifest whose items point back at the images they explain.

The core (``core/gradcam.py``) picks the layer and draws the overlays; this job chooses the items (the
first ``count`` of the requested labels in manifest order), writes the images and records per overlay the
explained class, its probability and the parent item. ``plan`` resolves the target layer at Start on the
architecture's module tree (built on the meta device: no weights, no memory), so a layer the model lacks
is refused there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from skingenbench.services.classification.core import data as data_core
from skingenbench.services.classification.core.inference import item_names
from skingenbench.services.classification.job_io import STAGE_VERSION, load_pinned_checkpoint
from skingenbench.services.classification.request_checks import (
    RequestedManifest,
    checkpoint_ref,
    class_labels,
    count_field,
    requested_manifest,
    split_name,
)
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.classifiers.models import CLASSIFIERS, config_from_dict
from skingenbench.services.core.device import select_device
from skingenbench.services.core.errors import FailedPrecondition
from skingenbench.services.core.manifest import Item, Manifest, ParentRef, Provenance
from skingenbench.services.platform.job_kind import JobKind, JobOutputs, JobPlan, ObjectRef
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.manifest_io import read_item, write_manifest
from skingenbench.services.platform.store import ObjectStore

from skingenbench.api.v1 import classification_pb2

DEFAULT_GRADCAM_COUNT = 8
MAX_GRADCAM_COUNT = 256


@dataclass(frozen=True)
class GradCamPlan(JobPlan):
    checkpoint: ObjectRef  # the file's sha256, as read at Start
    data: RequestedManifest
    split: str
    count: int
    labels: tuple[str, ...]
    layer: str  # the module path, resolved at Start


def _explained_items(manifest: Manifest, split: str, labels: tuple[str, ...], count: int) -> list[Item]:
    """The first ``count`` items of the split with one of ``labels``, in manifest order."""
    items = [item for item in data_core.split_items(manifest, split) if item.label in labels][:count]
    if not items:
        raise FailedPrecondition(f"no {split} items with labels {list(labels)} in the data manifest")
    return items


def _resolved_layer(metadata: dict[str, Any], requested: str) -> str:
    """The target layer's module path on the checkpoint's architecture; INVALID_ARGUMENT if it has none."""
    import torch
    from skingenbench.services.classification.core.gradcam import target_layer

    config = dataclasses.replace(config_from_dict(metadata["config"]), pretrained="none")
    with torch.device("meta"):  # the module tree only: parameters without storage
        model, _ = CLASSIFIERS.get(metadata["classifier"]).factory(
            config, num_classes=len(metadata["classes"])
        )
    layer, _ = target_layer(model, metadata["classifier"], requested)
    return layer


class GradCamKind(JobKind[classification_pb2.GradCamRequest, GradCamPlan]):
    name = "gradcam"
    stage = "classifier-gradcam"
    version = STAGE_VERSION
    request_type = classification_pb2.GradCamRequest
    plan_type = GradCamPlan

    def plan(self, request: classification_pb2.GradCamRequest, store: ObjectStore) -> GradCamPlan:
        checkpoint, metadata = checkpoint_ref(store, request.checkpoint_uri, request.checkpoint_sha256)
        manifest, data = requested_manifest(store, request.data, "data manifest")
        split = split_name(request.split)
        count = count_field(request.count, "count", MAX_GRADCAM_COUNT) or DEFAULT_GRADCAM_COUNT
        labels = class_labels(request.labels)
        layer = _resolved_layer(metadata, request.target_layer)
        _explained_items(manifest, split, labels, count)
        prefix = self.address(
            [checkpoint.sha256, manifest.content_hash()],
            {"split": split, "count": count, "labels": list(labels), "layer": layer},
        )
        return GradCamPlan(prefix, checkpoint, data, split, count, labels, layer)

    def run(self, plan: GradCamPlan, ctx: JobContext) -> JobOutputs:
        from skingenbench.services.classification.core.gradcam import gradcam_overlays, target_layer
        from skingenbench.services.core.imaging.decoding import decode_image

        items = _explained_items(plan.data.read(ctx.store), plan.split, plan.labels, plan.count)
        model, config, meta = load_pinned_checkpoint(ctx, plan.checkpoint)
        layer, _ = target_layer(model, meta["classifier"], plan.layer)
        ctx.progress(0, len(items), "grad-cam")
        images = [decode_image(read_item(ctx.store, item)) for item in items]
        overlays = gradcam_overlays(model, meta["classifier"], config, images, layer, select_device())
        out_items = []
        for name, item, overlay in zip(item_names(items), items, overlays, strict=True):
            stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            info = ctx.store.put_bytes(f"{plan.output_prefix}/overlays/{stem}.png", overlay.png, "image/png")
            out_items.append(
                Item(
                    key=info.key,
                    sha256=info.sha256,
                    label=item.label,
                    lesion_id=item.lesion_id,
                    split=item.split,
                    source=item.source,
                    image_id=f"{stem}_gradcam",
                    meta={
                        "method": "gradcam",
                        "target_layer": layer,
                        "parent_key": item.key,
                        "explained_class": CLASSES[overlay.target_class],
                        "probability": float(overlay.probs[overlay.target_class]),
                    },
                )
            )
        parents = [
            ParentRef(plan.data.uri, plan.data.sha256),
            ParentRef(plan.checkpoint.uri, plan.checkpoint.sha256),
        ]
        provenance = Provenance(
            stage=self.stage,
            stage_version=STAGE_VERSION,
            parents=parents,
            config={"classifier": meta["classifier"], "layer": layer, "split": plan.split},
        )
        ref = write_manifest(
            ctx.store,
            f"{plan.output_prefix}/manifest.json",
            Manifest(out_items, provenance, name=f"gradcam-{meta['classifier']}"),
        )
        outputs = JobOutputs(summary={"overlays": len(out_items), "layer": layer})
        outputs.add("manifest", ref.uri, ref.sha256)
        return outputs
