"""The artifact-removal quality report on phantom ground truth.

For each phantom item (image, clean image, hair and lesion masks) the pipeline runs without
augmentation; the untouched image, the clean image and the true masks are brought to the same
geometry, and :func:`skingenbench.services.preprocessing.core.quality.hair_removal_quality` measures PSNR/SSIM inside
and outside the true hair, hair-mask IoU and lesion-mask Dice. The reference study removed hair
without measuring what it removed; this is that measurement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.core.manifest import Item, Manifest
from skingenbench.services.platform.manifest_io import read_manifest, read_verified
from skingenbench.services.platform.store import ObjectStore

REQUIRED_OBJECTS = ("clean", "mask_hair", "mask_lesion")


def item_quality(store: ObjectStore, item: Item, pipeline: Any) -> dict[str, float | None]:
    from skingenbench.services.core.imaging.decoding import decode_image, decode_mask
    from skingenbench.services.preprocessing.core.geometry import resize_image, resize_mask
    from skingenbench.services.preprocessing.core.quality import hair_removal_quality

    def load(name: str, mask: bool = False):
        entry = item.objects[name]
        data = read_verified(store, entry.key, entry.sha256)
        return decode_mask(data) if mask else decode_image(data)

    original = decode_image(read_verified(store, item.key, item.sha256))
    result = pipeline(original, seed=0, augment=False)
    size, fit = pipeline.config.size, pipeline.config.fit
    return hair_removal_quality(
        original=resize_image(original, size, fit),
        processed=result.image,
        clean=resize_image(load("clean"), size, fit),
        hair_mask_true=resize_mask(load("mask_hair", True), size, fit),
        hair_mask_pred=result.hair_mask,
        lesion_mask_true=resize_mask(load("mask_lesion", True), size, fit),
        lesion_mask_pred=result.lesion_mask,
    )


def phantom_items(manifest: Manifest, limit: int = 0) -> list[Item]:
    """The items with phantom ground truth (the first ``limit``; 0: all); refuses a manifest without any."""
    if limit < 0:
        raise InvalidArgument(f"limit must be 0 (all items) or more, got {limit}")
    items = [item for item in manifest.items if all(name in item.objects for name in REQUIRED_OBJECTS)]
    if not items:
        raise FailedPrecondition(
            "the manifest has no phantom ground truth (clean images and hair/lesion masks)",
            hint="run the report on a phantom import: skingenbench data phantom, then import-ham10000",
        )
    return items[:limit] if limit else items


def quality_report(
    store: ObjectStore,
    manifest_uri: str,
    pipeline_name: str = "advanced",
    profile: str = "paper",
    overrides: dict[str, Any] | None = None,
    limit: int = 0,
    manifest_sha256: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Aggregate quality over every phantom item with hair (and over all items for lesion Dice)."""
    from skingenbench.services.preprocessing.core.pipeline_registry import create_pipeline
    from skingenbench.services.preprocessing.core.quality import aggregate_quality

    items = phantom_items(read_manifest(store, manifest_uri, manifest_sha256), limit)
    pipeline = create_pipeline(pipeline_name, profile, **(overrides or {}))
    with_hair, all_reports = [], []
    for done, item in enumerate(items, 1):
        report = item_quality(store, item, pipeline)
        all_reports.append(report)
        if report["psnr_hair_before"] is not None:
            with_hair.append(report)
        if progress is not None:
            progress(done, len(items))
    hair_summary = aggregate_quality(with_hair)
    lesion = aggregate_quality({"lesion_dice": r["lesion_dice"]} for r in all_reports)
    return {
        "pipeline": pipeline_name,
        "profile": profile,
        "config": pipeline.config.to_dict(),
        "images": len(items),
        "images_with_hair": len(with_hair),
        "hair_regions": hair_summary,
        "lesion_dice_all_images": lesion.get("lesion_dice", {}),
    }


def quality_markdown(report: dict[str, Any]) -> str:
    from skingenbench.services.preprocessing.core.quality import format_quality_markdown

    header = (
        f"Pipeline `{report['pipeline']}` ({report['profile']}), {report['images']} phantom images, "
        f"{report['images_with_hair']} with hair.\n\n"
    )
    body = format_quality_markdown(
        report["hair_regions"], title=f"Artifact removal quality: {report['pipeline']}"
    )
    dice = report.get("lesion_dice_all_images") or {}
    footer = (
        (
            f"\nLesion-mask Dice over all images: {dice.get('mean', float('nan')):.3f} "
            f"± {dice.get('std', float('nan')):.3f} (n={dice.get('n', 0)})\n"
        )
        if dice
        else ""
    )
    return header + body + footer
