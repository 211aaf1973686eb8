from __future__ import annotations

import numpy as np
import pytest
from cv2 import INTER_CUBIC, INTER_NEAREST, LINE_AA, GaussianBlur, ellipse, polylines, resize
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.preprocessing.core.hair_removal import (
    detect_hair,
    inpaint,
    line_kernel,
    remove_hair,
)
from skingenbench.services.preprocessing.core.quality import mask_iou, psnr_in_region

SKIN, LESION, HAIR = (224, 172, 140), (110, 70, 50), (55, 40, 30)


def hairy_skin(height: int = 450, width: int = 600, hairs: int = 10, hair_width: int = 3, seed: int = 0):
    """Skin with fine texture, a soft-edged dark elliptical lesion and anti-aliased curved dark hair.

    Returns (hairy image, clean image, true hair mask, true lesion mask); a pixel is "hair" in the
    truth where the drawn hair covers at least half of it."""
    rng = np.random.default_rng(seed)
    clean = np.full((height, width, 3), SKIN, np.float32) + rng.normal(0, 3, (height, width, 1)).astype(
        np.float32
    )
    lesion = np.zeros((height, width), np.uint8)
    ellipse(lesion, (width // 2, height // 2), (int(width * 0.18), int(height * 0.16)), 20.0, 0, 360, 1, -1)
    alpha = GaussianBlur(lesion.astype(np.float32), (0, 0), 3)[..., None]
    clean = np.clip(clean * (1 - alpha) + np.float32(LESION) * alpha, 0, 255)
    coverage = np.zeros((height, width), np.uint8)
    for _ in range(hairs):
        p0, p1, p2 = rng.uniform((0, 0), (width, height), (3, 2))
        t = np.linspace(0, 1, 80)[:, None]
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2  # quadratic Bezier: a curved hair
        polylines(coverage, [np.rint(curve * 16).astype(np.int32)], False, 255, hair_width, LINE_AA, shift=4)
    cover = coverage.astype(np.float32)[..., None] / 255
    hairy = clean * (1 - cover) + np.float32(HAIR) * cover
    return np.rint(hairy).astype(np.uint8), np.rint(clean).astype(np.uint8), coverage >= 128, lesion > 0


@pytest.mark.parametrize(("height", "width", "hair_width"), [(450, 600, 3), (256, 256, 2)])
def test_hair_mask_matches_the_truth(height, width, hair_width):
    image, _, hair_true, _ = hairy_skin(height, width, hair_width=hair_width)
    hair = detect_hair(image)
    assert hair.dtype == bool and hair.shape == (height, width)
    assert mask_iou(hair_true, hair) > 0.6
    assert (hair & hair_true).sum() / hair_true.sum() > 0.95  # recall: hair left behind is the worse error


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_removal_restores_hair_pixels_and_leaves_the_rest(method):
    image, clean, hair_true, lesion_true = hairy_skin()
    processed, hair = remove_hair(image, inpaint_method=method)
    assert processed.dtype == np.uint8 and processed.shape == image.shape
    before_inside = psnr_in_region(image, clean, hair_true)
    after_inside = psnr_in_region(processed, clean, hair_true)
    assert after_inside > before_inside + 15.0  # ~6-7 dB -> ~30 dB on these images
    before_outside = psnr_in_region(image, clean, ~hair_true)
    after_outside = psnr_in_region(processed, clean, ~hair_true)
    assert after_outside > before_outside - 0.5
    # The lesion away from hair is left exactly as it was.
    far_from_hair = lesion_true & ~GaussianBlur(hair.astype(np.float32), (0, 0), 4).astype(bool)
    np.testing.assert_array_equal(processed[far_from_hair], image[far_from_hair])


def test_no_hair_means_no_change():
    image, clean, _, _ = hairy_skin(hairs=0)
    processed, hair = remove_hair(image)
    assert not hair.any()  # the lesion's border is not taken for hair
    np.testing.assert_array_equal(processed, image)


def test_kernel_scales_with_image_size():
    small, _, truth, _ = hairy_skin(225, 300, hair_width=2, seed=4)
    large = resize(small, (600, 450), interpolation=INTER_CUBIC)
    large_truth = resize(truth.astype(np.uint8), (600, 450), interpolation=INTER_NEAREST) > 0
    assert mask_iou(truth, detect_hair(small)) > 0.5
    assert mask_iou(large_truth, detect_hair(large)) > 0.5


def test_a_single_orientation_misses_hair_along_it():
    image = np.full((200, 200, 3), SKIN, np.uint8)
    image[100:103, 20:180] = HAIR  # one horizontal hair
    assert detect_hair(image, orientations=4).sum() > 300
    # A horizontal line never bridges a horizontal hair: DullRazor needs several directions.
    assert detect_hair(image, orientations=1).sum() == 0


def test_line_kernel():
    kernel = line_kernel(10, 45.0)
    assert kernel.shape == (11, 11) and kernel.dtype == np.uint8  # odd, so it has a centre
    rows, cols = np.nonzero(kernel)
    np.testing.assert_array_equal(rows, cols)  # the diagonal through the centre
    assert kernel[5, 5] == 1 and abs(np.hypot(np.ptp(rows), np.ptp(cols)) - 10) <= 1.5  # Euclidean length
    assert line_kernel(7, 0.0)[3].sum() == 7 and line_kernel(7, 0.0).sum() == 7


def test_inpaint_refuses_unknown_method():
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(InvalidArgument):
        inpaint(image, np.ones((16, 16), bool), method="smear")


@pytest.mark.parametrize("orientations", [1, 4, 8])
def test_line_response_is_the_maximum_of_the_black_hats(orientations):
    import cv2
    from skingenbench.services.preprocessing.core.hair_removal import dark_line_response, line_kernel

    gray = np.random.default_rng(orientations).integers(0, 256, (70, 90), dtype=np.uint8)
    expected = np.zeros_like(gray)
    for index in range(orientations):
        kernel = line_kernel(11, 180.0 * index / orientations)
        expected = np.maximum(expected, cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, kernel))
    np.testing.assert_array_equal(dark_line_response(gray, 11, orientations), expected)
