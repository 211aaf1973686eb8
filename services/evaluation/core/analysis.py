"""Feature-space analysis: where each synthetic set lies relative to the real set.

PCA (linear, faithful to distances along its axes) and t-SNE (van der Maaten & Hinton 2008; local
neighbourhoods, not global distances: clusters far apart in t-SNE are not necessarily far apart)
of real vs each synthetic set, both fitted on all sets together so they share one map. UMAP would
be an option; it is not installed here. Alongside the pictures, numbers that do not depend on a
projection: the distance between each set's centroid and the real centroid, and each set's
dispersion (mean distance to its own centroid), also as a share of the real set's, since a
generator that collapses (mode collapse) shows a small relative dispersion.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.evaluation.core.metrics import METRICS

REAL = "real"
EXACT_TSNE_POINTS = 1000


@dataclass
class FeatureSpaceConfig:
    tsne_perplexity: float = 30.0  # lowered automatically to (n - 1) / 3 for small sets, and recorded
    pca_dims_before_tsne: int = 50  # the usual denoising step before t-SNE
    max_points_per_set: int = 2000  # t-SNE is quadratic; larger sets are subsampled (seeded)

    def validate(self) -> None:
        if self.tsne_perplexity <= 0 or self.pca_dims_before_tsne < 2 or self.max_points_per_set < 2:
            raise InvalidArgument(
                "feature_space needs tsne_perplexity > 0, pca_dims_before_tsne >= 2 and "
                "max_points_per_set >= 2"
            )


METRICS.register(
    "feature_space",
    config_cls=FeatureSpaceConfig,
    profiles={"tiny": FeatureSpaceConfig(max_points_per_set=200), "paper": FeatureSpaceConfig()},
    description="PCA and t-SNE maps of real vs synthetic features (PNG), centroid distances and "
    "per-set dispersion",
    capabilities={"feature_space": "extractor and domain", "outputs": "png"},
)(lambda config: config)


def _stack(sets: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    names = list(sets)
    if not names or any(len(sets[n]) == 0 for n in names):
        raise InvalidArgument("feature-space analysis needs non-empty feature sets")
    data = np.concatenate([np.asarray(sets[n], dtype=np.float64) for n in names])
    labels = np.concatenate([np.full(len(sets[n]), i) for i, n in enumerate(names)])
    return data, labels, names


def _split(points: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    return {name: points[labels == i] for i, name in enumerate(names)}


def subsample(sets: Mapping[str, np.ndarray], limit: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        n: (f if len(f) <= limit else f[np.sort(rng.choice(len(f), limit, replace=False))])
        for n, f in sets.items()
    }


def pca_embedding(sets: Mapping[str, np.ndarray], seed: int = 0) -> tuple[dict[str, np.ndarray], list[float]]:
    """2-D PCA of all sets together; also the explained variance ratio of the two axes."""
    from sklearn.decomposition import PCA

    data, labels, names = _stack(sets)
    pca = PCA(n_components=min(2, *data.shape), random_state=seed)
    points = pca.fit_transform(data)
    return _split(points, labels, names), [float(v) for v in pca.explained_variance_ratio_]


def tsne_embedding(
    sets: Mapping[str, np.ndarray], perplexity: float = 30.0, pca_dims: int = 50, seed: int = 0
) -> tuple[dict[str, np.ndarray], float]:
    """2-D t-SNE of all sets together (after PCA to ``pca_dims``); returns the perplexity used."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    data, labels, names = _stack(sets)
    if len(data) < 4:
        raise InvalidArgument(f"t-SNE needs at least 4 points in all, got {len(data)}")
    dims = min(pca_dims, *data.shape)
    if dims < data.shape[1]:
        data = PCA(n_components=dims, random_state=seed).fit_transform(data)
    used = float(min(perplexity, (len(data) - 1) / 3))
    # Exact gradients for small sets: faster there than Barnes-Hut's tree (whose per-iteration overhead
    # dominates below ~1k points) and without its approximation.
    method = "exact" if len(data) <= EXACT_TSNE_POINTS else "barnes_hut"
    points = TSNE(
        n_components=2, perplexity=used, init="pca", random_state=seed, method=method
    ).fit_transform(data)
    return _split(points, labels, names), used


def dispersion(features: np.ndarray) -> float:
    """Mean Euclidean distance of a set's features to their centroid."""
    features = np.asarray(features, dtype=np.float64)
    return float(np.linalg.norm(features - features.mean(axis=0), axis=1).mean())


def centroid_summary(real: np.ndarray, synthetic: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Centroid distance to the real set (absolute, and in units of the real dispersion) and dispersion
    (absolute, and relative to the real set's) of every set."""
    real = np.asarray(real, dtype=np.float64)
    centre, spread = real.mean(axis=0), dispersion(real)
    out: dict[str, Any] = {
        REAL: {
            "count": len(real),
            "dispersion": spread,
            "relative_dispersion": 1.0,
            "centroid_distance": 0.0,
            "relative_centroid_distance": 0.0,
        }
    }
    for name, features in synthetic.items():
        features = np.asarray(features, dtype=np.float64)
        distance = float(np.linalg.norm(features.mean(axis=0) - centre))
        own = dispersion(features)
        out[name] = {
            "count": len(features),
            "dispersion": own,
            "relative_dispersion": own / spread if spread > 0 else float("nan"),
            "centroid_distance": distance,
            "relative_centroid_distance": distance / spread if spread > 0 else float("nan"),
        }
    return out


def scatter_png(points: Mapping[str, np.ndarray], title: str, axis_labels: Sequence[str] = ("", "")) -> bytes:
    """A scatter plot of each set's 2-D points (real in grey, under the synthetic sets), as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 5.2), dpi=120)
    axes = figure.add_subplot()
    colours = iter(
        [
            "tab:red",
            "tab:blue",
            "tab:green",
            "tab:orange",
            "tab:purple",
            "tab:brown",
            "tab:pink",
            "tab:olive",
            "tab:cyan",
        ]
    )
    for name, xy in points.items():
        style = (
            {"color": "0.55", "alpha": 0.5, "zorder": 1}
            if name == REAL
            else {"color": next(colours, None), "alpha": 0.7, "zorder": 2}
        )
        axes.scatter(xy[:, 0], xy[:, 1], s=10, label=f"{name} (n={len(xy)})", edgecolors="none", **style)
    axes.set_title(title)
    axes.set_xlabel(axis_labels[0])
    axes.set_ylabel(axis_labels[1])
    axes.legend(loc="best", fontsize=8, markerscale=2)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def feature_space_report(
    real: np.ndarray,
    synthetic: Mapping[str, np.ndarray],
    space: str,
    config: FeatureSpaceConfig | None = None,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(numbers, {"pca_<space>.png": …, "tsne_<space>.png": …}) for one feature space."""
    config = config or FeatureSpaceConfig()
    summary = centroid_summary(real, synthetic)
    sets = subsample(
        {REAL: np.asarray(real), **{n: np.asarray(f) for n, f in synthetic.items()}},
        config.max_points_per_set,
        seed,
    )
    pca_points, explained = pca_embedding(sets, seed)
    tsne_points, perplexity = tsne_embedding(sets, config.tsne_perplexity, config.pca_dims_before_tsne, seed)
    plots = {
        f"pca_{space}.png": scatter_png(
            pca_points,
            f"PCA of {space} features",
            [f"PC{i + 1} ({v:.0%})" for i, v in enumerate(explained)] + ["", ""],
        ),
        f"tsne_{space}.png": scatter_png(
            tsne_points, f"t-SNE of {space} features (perplexity {perplexity:.1f})"
        ),
    }
    numbers = {
        "space": space,
        "sets": summary,
        "pca_explained_variance": explained,
        "tsne_perplexity": perplexity,
        "points_per_set": {n: len(f) for n, f in sets.items()},
        # the 2-D coordinates themselves, so a report can redraw the plots for print (flows/figures.py)
        "points": {
            "pca": {n: np.round(xy, 5).tolist() for n, xy in pca_points.items()},
            "tsne": {n: np.round(xy, 5).tolist() for n, xy in tsne_points.items()},
        },
    }
    return numbers, plots


def image_grid_png(images: Sequence[np.ndarray], columns: int = 8, cell: int = 96, title: str = "") -> bytes:
    """A grid of images (each resized to ``cell``×``cell``) as PNG bytes: the sample grids of a report."""
    from PIL import Image, ImageDraw

    if not images:
        raise InvalidArgument("an image grid needs at least one image")
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    header = 18 if title else 0
    canvas = Image.new("RGB", (columns * cell, rows * cell + header), "white")
    for index, image in enumerate(images):
        tile = Image.fromarray(np.asarray(image)[:, :, :3]).resize((cell, cell), Image.Resampling.BILINEAR)
        canvas.paste(tile, ((index % columns) * cell, header + (index // columns) * cell))
    if title:
        ImageDraw.Draw(canvas).text((4, 3), title, fill="black")
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
