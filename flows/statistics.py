"""The report's statistics on top of what the services computed: multiplicity and seed aggregation.

Pure numpy (no torch, no store; the percentile interval is the classification core's own), so a notebook, the report and ``skingenbench report check`` share it.

- **Holm's step-down correction** (Holm 1979, "A simple sequentially rejective multiple test
  procedure", Scand. J. Statist. 6:65-70): with the m p-values of a family sorted ascending,
  p_(1) <= ... <= p_(m), the adjusted value of p_(i) is max_{j <= i} min(1, (m - j + 1) p_(j)). It
  controls the family-wise error rate under *any* dependence between the tests, which is why it is
  used here: DeLong, McNemar and the paired bootstraps of one comparison score the same images, and
  seeds share the test set, so the tests of a report are far from independent. The values equal
  ``statsmodels.stats.multitest.multipletests(p, method="holm")[1]``.
- **Mean over seeds with a CI that combines seed and test-set variation**: the two-way
  ("pigeonhole") bootstrap for crossed random factors (Owen 2007, "The pigeonhole bootstrap",
  Ann. Appl. Stat. 1:386-411; the hierarchical case in Davison & Hinkley 1997, sec. 3.8). Every seed
  of a cell is scored on the same test images, so seeds and images are crossed, not nested. One
  replicate resamples the images (one draw of counts shared by all seeds, because they share the
  test set) and, independently, the seeds with replacement, and takes the mean over the drawn seeds
  of the metric on the drawn images. The percentile interval of those replicates covers the variation
  of training (seed) and of the test sample together; Owen shows it is mildly conservative. With one
  seed it is the ordinary percentile bootstrap over test images (Efron & Tibshirani 1993, ch. 13).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# One percentile interval for the services' CIs and the report's: the classification core's (numpy only).
from skingenbench.services.classification.core.bootstrap import DEFAULT_LEVEL, percentile_interval


def holm_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values in the input order; ``None`` (a test that was not computed) stays ``None``
    and is not part of the family (m counts the p-values that exist)."""
    present = [(i, float(p)) for i, p in enumerate(p_values) if p is not None and np.isfinite(p)]
    for _, p in present:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p-values must lie in [0, 1], got {p}")
    adjusted: list[float | None] = [None] * len(p_values)
    m = len(present)
    running = 0.0
    # A stable sort keeps tied p-values in input order; ties get the same adjusted value either way.
    for rank, (index, p) in enumerate(sorted(present, key=lambda pair: pair[1])):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def seed_and_image_replicates(replicates, seed: int = 0) -> np.ndarray:
    """Two-way bootstrap replicates [B] of the mean over seeds from per-seed replicates [S, B].

    ``replicates[s, b]`` is seed s's metric on image resample b, and resample b must be the *same*
    draw of test images for every seed. Replicate b then averages column b over S seeds drawn with
    replacement (NaN when a drawn seed's metric is undefined on that resample).
    """
    table = np.atleast_2d(np.asarray(replicates, dtype=float))
    n_seeds, n_resamples = table.shape
    if n_seeds < 1 or n_resamples < 1:
        raise ValueError(f"need replicates of shape [S >= 1, B >= 1], got {table.shape}")
    drawn = np.random.default_rng(seed).integers(0, n_seeds, size=(n_resamples, n_seeds))
    return table[drawn, np.arange(n_resamples)[:, None]].mean(axis=1)


def mean_over_seeds(
    points: Sequence[float | None], replicates, level: float = DEFAULT_LEVEL, seed: int = 0
) -> dict[str, float | int | None]:
    """The mean over seeds of one metric of one cell, with its two-way bootstrap interval.

    ``points``: the metric of each seed on the whole test set; ``replicates`` [S, B] as in
    :func:`seed_and_image_replicates`. The mean is ``None`` when a seed's value is undefined.
    """
    values = np.array([np.nan if p is None else float(p) for p in points])
    table = np.atleast_2d(np.asarray(replicates, dtype=float))
    if table.shape[0] != values.size:
        raise ValueError(f"{values.size} point values for replicates of {table.shape[0]} seeds")
    mean = float(values.mean()) if values.size and np.isfinite(values).all() else None
    low, high, undefined = percentile_interval(seed_and_image_replicates(table, seed), level)
    return {
        "mean": mean,
        "ci_low": low,
        "ci_high": high,
        "n_seeds": int(values.size),
        "n_resamples": int(table.shape[1]),
        "n_undefined": undefined,
        "seed_sd": float(values.std(ddof=1)) if values.size > 1 and mean is not None else None,
    }
