"""How well artifact removal worked, measured against the phantom's clean ground truth.

Image fidelity is split by region, because a hair remover has two jobs that a whole-image score
blurs together: restore the pixels under the hair (PSNR/SSIM *inside* the true hair mask should
rise a lot) and leave everything else alone (PSNR/SSIM *outside* should barely move). SSIM is the
local map of Wang et al. (2004) from ``skimage.metrics.structural_similarity(full=True)``, averaged
over the region's pixels and channels. Masks are scored by IoU (hair) and Dice (lesion).

Conventions: an empty region gives None (JSON null) rather than NaN; identical pixels give PSNR
``PSNR_CAP_DB`` rather than infinity so means stay finite; two empty masks agree perfectly (1.0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from skimage.metrics import structural_similarity
from skingenbench.services.core.errors import InvalidArgument

PSNR_CAP_DB = 100.0


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise InvalidArgument(f"shapes differ: {a.shape} vs {b.shape}")


def psnr_in_region(
    image: np.ndarray, reference: np.ndarray, region: np.ndarray, data_range: float = 255.0
) -> float | None:
    """PSNR in dB over the pixels of ``region`` (all channels), capped at ``PSNR_CAP_DB``."""
    _check_pair(image, reference)
    region = region.astype(bool)
    if not region.any():
        return None
    error = image[region].astype(np.float64) - reference[region].astype(np.float64)
    mse = float(np.mean(error**2))
    return PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, 10.0 * math.log10(data_range**2 / mse))


def ssim_map(image: np.ndarray, reference: np.ndarray, data_range: float = 255.0) -> np.ndarray:
    """Per-pixel SSIM (H, W), averaged over channels."""
    _check_pair(image, reference)
    channel_axis = 2 if image.ndim == 3 else None
    _, full = structural_similarity(
        image, reference, data_range=data_range, channel_axis=channel_axis, full=True
    )
    return full.mean(axis=2) if full.ndim == 3 else full


def mean_in_region(values: np.ndarray, region: np.ndarray) -> float | None:
    region = region.astype(bool)
    return float(values[region].mean()) if region.any() else None


def mask_iou(truth: np.ndarray, predicted: np.ndarray) -> float:
    truth, predicted = truth.astype(bool), predicted.astype(bool)
    union = int((truth | predicted).sum())
    return 1.0 if union == 0 else float((truth & predicted).sum() / union)


def mask_dice(truth: np.ndarray, predicted: np.ndarray) -> float:
    truth, predicted = truth.astype(bool), predicted.astype(bool)
    total = int(truth.sum() + predicted.sum())
    return 1.0 if total == 0 else float(2 * (truth & predicted).sum() / total)


def hair_removal_quality(
    original: np.ndarray,
    processed: np.ndarray,
    clean: np.ndarray,
    hair_mask_true: np.ndarray,
    hair_mask_pred: np.ndarray,
    lesion_mask_true: np.ndarray,
    lesion_mask_pred: np.ndarray,
) -> dict[str, float | None]:
    """Fidelity inside and outside the true hair (before = ``original``, after = ``processed``, both
    against ``clean``), hair-mask IoU / precision / recall and lesion-mask Dice, as a flat dict."""
    hair, outside = hair_mask_true.astype(bool), ~hair_mask_true.astype(bool)
    ssim_before, ssim_after = ssim_map(original, clean), ssim_map(processed, clean)
    predicted = hair_mask_pred.astype(bool)
    hits = int((hair & predicted).sum())
    report: dict[str, float | None] = {
        "psnr_hair_before": psnr_in_region(original, clean, hair),
        "psnr_hair_after": psnr_in_region(processed, clean, hair),
        "psnr_outside_before": psnr_in_region(original, clean, outside),
        "psnr_outside_after": psnr_in_region(processed, clean, outside),
        "ssim_hair_before": mean_in_region(ssim_before, hair),
        "ssim_hair_after": mean_in_region(ssim_after, hair),
        "ssim_outside_before": mean_in_region(ssim_before, outside),
        "ssim_outside_after": mean_in_region(ssim_after, outside),
        "hair_iou": mask_iou(hair, predicted),
        "hair_precision": hits / int(predicted.sum()) if predicted.any() else None,
        "hair_recall": hits / int(hair.sum()) if hair.any() else None,
        "lesion_dice": mask_dice(lesion_mask_true, lesion_mask_pred),
    }
    before, after = report["psnr_hair_before"], report["psnr_hair_after"]
    report["psnr_hair_gain"] = None if before is None or after is None else after - before
    return report


def aggregate_quality(reports: Iterable[Mapping[str, float | None]]) -> dict[str, dict[str, float | int]]:
    """Per metric: mean, sample standard deviation (0 for one value) and n, skipping None values."""
    collected: dict[str, list[float]] = {}
    for report in reports:
        for name, value in report.items():
            if value is not None:
                collected.setdefault(name, []).append(float(value))
    return {
        name: {
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "n": len(values),
        }
        for name, values in sorted(collected.items())
    }


def format_quality_markdown(report: Mapping[str, Any], title: str = "Artifact removal quality") -> str:
    """A Markdown table of an aggregate (mean +- std, n) or of a single image's report."""
    lines = [f"### {title}", "", "| metric | value | n |", "|---|---|---|"]
    for name, value in report.items():
        if isinstance(value, Mapping):
            lines.append(f"| {name} | {value['mean']:.4g} ± {value['std']:.2g} | {value['n']} |")
        else:
            lines.append(f"| {name} | {'—' if value is None else f'{value:.4g}'} | 1 |")
    return "\n".join(lines) + "\n"
