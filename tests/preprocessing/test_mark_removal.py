from __future__ import annotations

import cv2
import numpy as np
import pytest
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.preprocessing.core.mark_removal import (
    detect_ink,
    detect_ruler,
    remove_marks,
    straight_runs,
)
from skingenbench.services.preprocessing.core.quality import mask_iou, psnr_in_region

SKIN, LESION = (224, 172, 140), (110, 70, 50)


def skin_with_lesion(height: int = 450, width: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = np.clip(
        np.full((height, width, 3), SKIN, np.float32) + rng.normal(0, 3, (height, width, 1)), 0, 255
    )
    lesion = np.zeros((height, width), np.uint8)
    cv2.ellipse(lesion, (width // 2, height // 2), (width // 5, height // 6), 0.0, 0, 360, 1, -1)
    image[lesion > 0] = LESION
    return image.astype(np.uint8), lesion > 0


def draw_ruler(image: np.ndarray) -> np.ndarray:
    """A ruler along the bottom edge: a baseline with ticks every 12 px (every fifth one longer)."""
    height, width = image.shape[:2]
    ruler = np.zeros((height, width), np.uint8)
    base = height - 25
    cv2.line(ruler, (40, base), (width - 40, base), 1, 2)
    for index, x in enumerate(range(40, width - 40, 12)):
        cv2.line(ruler, (x, base), (x, base - (20 if index % 5 == 0 else 10)), 1, 2)
    image[ruler > 0] = (50, 45, 45)
    return ruler > 0


def draw_ink(image: np.ndarray, colour=(110, 50, 160)) -> np.ndarray:
    ink = np.zeros(image.shape[:2], np.uint8)
    cv2.ellipse(ink, (90, 80), (40, 9), 30.0, 0, 360, 1, -1)
    image[ink > 0] = colour
    return ink > 0


def test_ruler_detected_and_lesion_untouched():
    image, lesion = skin_with_lesion()
    ruler = draw_ruler(image)
    found = detect_ruler(image)
    assert (found & ruler).sum() / ruler.sum() > 0.95
    assert not (found & lesion).any()
    assert mask_iou(ruler, found) > 0.4  # the black-hat's 1 px halo costs precision, not recall


def test_dark_line_in_the_centre_is_not_a_ruler():
    image, _ = skin_with_lesion()
    cv2.line(image, (250, 60), (350, 60), (50, 45, 45), 2)  # straight and dark but far from the border
    assert not detect_ruler(image, band_fraction=0.1).any()


def test_clean_image_has_no_marks():
    image, _ = skin_with_lesion()
    assert not detect_ruler(image).any()
    assert not detect_ink(image).any()


def test_ink_detected():
    image, lesion = skin_with_lesion()
    ink = draw_ink(image)
    found = detect_ink(image)
    assert mask_iou(ink, found) > 0.9 and not (found & lesion).any()


def test_greyish_blue_structures_are_not_ink():
    # Blue-white veil / blue nevus: blue hue but low saturation (~0.2); must survive ink removal.
    image, _ = skin_with_lesion()
    draw_ink(image, colour=(120, 130, 150))
    assert not detect_ink(image).any()


def test_remove_marks_restores_the_skin():
    clean, _ = skin_with_lesion()
    image = clean.copy()
    marks = draw_ruler(image) | draw_ink(image)
    processed, found = remove_marks(image)
    assert found.dtype == bool and (found & marks).sum() / marks.sum() > 0.95
    assert psnr_in_region(processed, clean, marks) > psnr_in_region(image, clean, marks) + 15
    # Hard-edged marks leave the rest identical (PSNR at its cap), so bound the change instead:
    # only the dilated rim around each mark is repainted.
    assert psnr_in_region(processed, clean, ~marks) > 45.0


def test_switches():
    image, _ = skin_with_lesion()
    draw_ink(image)
    ruler = draw_ruler(image)
    _, only_ruler = remove_marks(image, remove_ink=False)
    _, nothing = remove_marks(image, remove_ink=False, remove_ruler=False)
    assert (only_ruler & ruler).any() and not nothing.any()


def test_straight_runs_keep_lines_and_drop_blobs():
    mask = np.zeros((60, 60), bool)
    mask[10, 5:45] = True  # a 40 px line
    mask[40:46, 40:46] = True  # a 6 px blob
    runs = straight_runs(mask, length=15, orientations=8)
    assert runs[10, 5:45].all() and not runs[40:46, 40:46].any()


def test_bad_hue_range_refused():
    with pytest.raises(InvalidArgument):
        detect_ink(np.zeros((8, 8, 3), np.uint8), hue_range_degrees=(300.0, 200.0))


def reference_ruler(rgb, exclude=None):
    """detect_ruler before the windowed openings: every candidate, the whole image."""
    from skingenbench.services.core.imaging.regions import border_band, scaled_pixels
    from skingenbench.services.preprocessing.core.hair_removal import dark_line_response
    from skingenbench.services.preprocessing.core.mark_removal import straight_runs

    gray = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (3, 3), 0)
    length = scaled_pixels(rgb.shape, 0.06, minimum=3)
    candidates = (dark_line_response(gray, length, orientations=4) > 15.0) & border_band(rgb.shape, 0.2)
    if exclude is not None:
        candidates &= ~exclude
    straight = straight_runs(candidates, scaled_pixels(rgb.shape, 0.05, minimum=3), 8)
    count, labels = cv2.connectedComponents(candidates.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[np.unique(labels[straight])] = True
    keep[0] = False
    return keep[labels]


def test_windowed_ruler_detection_finds_what_the_whole_image_search_finds():
    from skingenbench.services.data.core.phantom import PhantomConfig, render_phantom
    from skingenbench.services.preprocessing.core.hair_removal import detect_hair
    from skingenbench.services.preprocessing.core.mark_removal import detect_ruler

    rng = np.random.default_rng(3)
    found = 0
    for _ in range(12):
        config = PhantomConfig(
            width=int(rng.integers(120, 400)), height=int(rng.integers(100, 300)), ruler_rate=0.7
        )
        image = render_phantom("MEL", rng, config).image
        hair = detect_hair(image)
        for exclude in (None, hair):
            expected = reference_ruler(image, exclude)
            np.testing.assert_array_equal(detect_ruler(image, exclude=exclude), expected)
            found += int(expected.any())
    assert found >= 4  # the comparison covered images with marks, not only empty masks
