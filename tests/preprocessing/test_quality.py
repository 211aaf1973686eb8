from __future__ import annotations

import json
import math

import numpy as np
import pytest
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.preprocessing.core.quality import (
    PSNR_CAP_DB,
    aggregate_quality,
    format_quality_markdown,
    hair_removal_quality,
    mask_dice,
    mask_iou,
    psnr_in_region,
    ssim_map,
)


def textured(seed: int = 0, shape=(64, 64, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(60, 200, shape, dtype=np.uint8)


def test_psnr_of_a_known_error():
    clean = textured()
    noisy = clean.copy()
    region = np.zeros(clean.shape[:2], bool)
    region[:16] = True
    noisy[region] += 10  # MSE 100 inside, 0 outside
    assert psnr_in_region(noisy, clean, region) == pytest.approx(10 * math.log10(255**2 / 100))
    assert psnr_in_region(noisy, clean, ~region) == PSNR_CAP_DB
    assert psnr_in_region(noisy, clean, np.zeros_like(region)) is None


def test_ssim_map_is_one_for_identical_images_and_drops_where_they_differ():
    clean = textured()
    damaged = clean.copy()
    damaged[:, :20] = 0
    assert np.allclose(ssim_map(clean, clean), 1.0)
    ssim = ssim_map(damaged, clean)
    assert ssim.shape == clean.shape[:2]
    assert ssim[:, :14].mean() < 0.1 and ssim[:, 30:].mean() > 0.99


def test_mask_scores():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:4] = True
    b[2:6] = True
    assert mask_iou(a, b) == pytest.approx(20 / 60)
    assert mask_dice(a, b) == pytest.approx(2 * 20 / 80)
    empty = np.zeros((10, 10), bool)
    assert mask_iou(empty, empty) == 1.0 and mask_dice(empty, empty) == 1.0
    assert mask_iou(a, empty) == 0.0


def test_hair_removal_quality_separates_inside_and_outside():
    clean = textured()
    hair = np.zeros(clean.shape[:2], bool)
    hair[30:33, :] = True
    original = clean.copy()
    original[hair] = 20
    processed = clean.copy()  # a perfect remover ...
    processed[hair] = clean[hair] + 5  # ... almost
    lesion = np.zeros_like(hair)
    lesion[20:40, 20:40] = True
    report = hair_removal_quality(original, processed, clean, hair, hair, lesion, lesion)
    assert report["psnr_hair_after"] == pytest.approx(10 * math.log10(255**2 / 25))
    assert report["psnr_hair_gain"] > 20
    assert report["psnr_outside_before"] == report["psnr_outside_after"] == PSNR_CAP_DB
    assert report["ssim_hair_after"] > report["ssim_hair_before"]
    assert report["hair_iou"] == report["hair_precision"] == report["hair_recall"] == 1.0
    assert report["lesion_dice"] == 1.0
    json.dumps(report)


def test_aggregate_and_markdown():
    reports = [{"hair_iou": 0.5, "psnr_hair_gain": 20.0}, {"hair_iou": 0.7, "psnr_hair_gain": None}]
    summary = aggregate_quality(reports)
    assert summary["hair_iou"]["mean"] == pytest.approx(0.6)
    assert summary["hair_iou"]["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert summary["psnr_hair_gain"] == {"mean": 20.0, "std": 0.0, "n": 1}
    json.dumps(summary)
    table = format_quality_markdown(summary)
    assert "| hair_iou | 0.6 ± 0.14 | 2 |" in table
    assert "| psnr_hair_after | — | 1 |" in format_quality_markdown({"psnr_hair_after": None})


def test_shape_mismatch_refused():
    with pytest.raises(InvalidArgument):
        psnr_in_region(textured(), textured(shape=(32, 32, 3)), np.ones((64, 64), bool))
