from __future__ import annotations

import cv2
import numpy as np
import pytest
from skingenbench.services.core.imaging.components import label_components


def random_masks():
    rng = np.random.default_rng(0)
    for density in (0.0, 0.02, 0.3, 0.6, 1.0):
        yield rng.random((int(rng.integers(1, 80)), int(rng.integers(1, 80)))) < density
    lines = np.zeros((64, 90), np.uint8)
    for _ in range(12):
        cv2.line(
            lines, tuple(map(int, rng.integers(0, 90, 2))), tuple(map(int, rng.integers(0, 64, 2))), 1, 2
        )
    yield lines > 0


@pytest.mark.parametrize("mask", list(random_masks()))
def test_statistics_are_opencvs(mask):
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    components = label_components(mask)
    assert components.count == count and np.array_equal(components.labels, labels)
    assert np.array_equal(components.areas()[1:], stats[1:, cv2.CC_STAT_AREA])
    expected_extent = np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT])
    assert np.array_equal(components.extents()[1:], expected_extent) and components.extents()[0] == 0
    np.testing.assert_allclose(components.centroids()[1:], centroids[1:], rtol=0, atol=1e-9)
    keep = np.arange(count) % 2 == 1
    assert np.array_equal(components.mask_of(keep), keep[labels])
