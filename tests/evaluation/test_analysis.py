"""Feature-space analysis: centroid distances and dispersion mean what they say; PCA and t-SNE maps are
real PNGs that separate sets that are apart; sample grids."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.evaluation.core.analysis import (
    FeatureSpaceConfig,
    centroid_summary,
    dispersion,
    feature_space_report,
    image_grid_png,
    pca_embedding,
    tsne_embedding,
)

from tests.evaluation.test_extractors import (
    one_blas_thread,  # noqa: F401 - autouse
    phantom_images,
)


def _sets(seed: int = 0, d: int = 64):
    rng = np.random.default_rng(seed)
    real = rng.normal(0.0, 1.0, (60, d))
    return real, {
        "close": rng.normal(0.1, 1.0, (40, d)),
        "far": rng.normal(3.0, 1.0, (40, d)),
        "collapsed": rng.normal(0.0, 0.1, (40, d)),
    }


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(data)).size


def test_centroid_distance_and_dispersion():
    real, synthetic = _sets()
    summary = centroid_summary(real, synthetic)
    assert summary["real"]["centroid_distance"] == 0.0 and summary["real"]["relative_dispersion"] == 1.0
    assert summary["close"]["centroid_distance"] < summary["far"]["centroid_distance"]
    assert summary["far"]["centroid_distance"] == pytest.approx(
        np.linalg.norm(synthetic["far"].mean(0) - real.mean(0))
    )
    assert summary["collapsed"]["relative_dispersion"] < 0.2 < summary["close"]["relative_dispersion"]
    assert dispersion(np.array([[0.0, 0.0], [2.0, 0.0]])) == pytest.approx(1.0)


def test_pca_and_tsne_share_one_map_and_separate_distant_sets():
    real, synthetic = _sets(1)
    sets = {"real": real, **synthetic}
    points, explained = pca_embedding(sets)
    assert {n: p.shape for n, p in points.items()} == {n: (len(f), 2) for n, f in sets.items()}
    assert explained[0] >= explained[1] > 0
    tsne, perplexity = tsne_embedding({"real": real[:12], "far": synthetic["far"][:12]}, perplexity=30.0)
    assert perplexity == pytest.approx(23 / 3)  # lowered for 24 points, and said so
    gap = np.linalg.norm(tsne["real"].mean(0) - tsne["far"].mean(0))
    spread = np.linalg.norm(tsne["real"] - tsne["real"].mean(0), axis=1).mean()
    assert gap > 2 * spread
    with pytest.raises(InvalidArgument):
        tsne_embedding({"real": real[:2], "far": synthetic["far"][:1]})


def test_feature_space_report_writes_both_plots():
    real, synthetic = _sets(2)
    numbers, plots = feature_space_report(
        real, synthetic, "inception", FeatureSpaceConfig(max_points_per_set=30)
    )
    assert set(plots) == {"pca_inception.png", "tsne_inception.png"}
    assert all(_png_size(png)[0] > 200 for png in plots.values())
    assert numbers["points_per_set"] == {"real": 30, "close": 30, "far": 30, "collapsed": 30}
    assert numbers["sets"]["real"]["count"] == 60  # numbers use every point; only the maps subsample
    # the plotted coordinates are kept, so the report can redraw the maps for print
    for method in ("pca", "tsne"):
        assert {n: len(xy) for n, xy in numbers["points"][method].items()} == numbers["points_per_set"]
        assert all(len(point) == 2 for xy in numbers["points"][method].values() for point in xy)


def test_image_grid():
    images = phantom_images(5, seed=3, size=40) + phantom_images(2, seed=4, size=32)
    width, height = _png_size(image_grid_png(images, columns=4, cell=32, title="MEL"))
    assert (width, height) == (4 * 32, 2 * 32 + 18)
    with pytest.raises(InvalidArgument):
        image_grid_png([])
