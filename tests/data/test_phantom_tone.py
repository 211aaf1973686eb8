"""The phantom's tone distribution (issue 18): default skewed light like HAM10000, weights per ITA
category, the old uniform draw by config; and the artifacts each rendered image records."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare
from skingenbench.services.core.imaging.skin_tone import SKIN_TYPES, skin_type_from_ita
from skingenbench.services.data.core.phantom import PhantomConfig, render_phantom
from skingenbench.services.data.core.phantom.config import HAM10000_ITA_BIN_WEIGHTS
from skingenbench.services.data.core.phantom.skin import sample_ita


def _shares(config: PhantomConfig, n: int = 6000) -> np.ndarray:
    rng = np.random.default_rng(5)
    names = [skin_type_from_ita(sample_ita(rng, config)) for _ in range(n)]
    return np.array([names.count(name) for name in SKIN_TYPES])


def test_default_draws_each_category_by_its_weight():
    config = PhantomConfig()
    counts = _shares(config)
    expected = np.array(HAM10000_ITA_BIN_WEIGHTS) / sum(HAM10000_ITA_BIN_WEIGHTS) * counts.sum()
    # A chi-square goodness-of-fit test (scipy) does not reject the configured shares...
    assert chisquare(counts, expected).pvalue > 0.001
    # ...and the default is skewed light: most images very light or light, dark the rarest.
    assert counts[:2].sum() > 0.6 * counts.sum() and counts[-1] == counts.min()


def test_uniform_weights_balance_the_categories_and_none_is_the_old_uniform_range():
    balanced = _shares(PhantomConfig(ita_range=(-50.0, 70.0), ita_bin_weights=(1, 1, 1, 1, 1, 1)))
    assert chisquare(balanced).pvalue > 0.001
    rng = np.random.default_rng(0)
    old = PhantomConfig(ita_range=(-30.0, 60.0), ita_bin_weights=None)
    values = np.array([sample_ita(rng, old) for _ in range(4000)])
    assert values.min() >= -30.0 and values.max() <= 60.0
    # Uniform over the range: a quarter of the values in each quarter of it.
    assert chisquare(np.histogram(values, np.linspace(-30, 60, 5))[0]).pvalue > 0.001


def test_categories_outside_the_range_are_never_drawn():
    config = PhantomConfig(ita_range=(0.0, 30.0))
    counts = _shares(config, 2000)
    assert set(np.flatnonzero(counts)) == {SKIN_TYPES.index(n) for n in ("intermediate", "tan", "brown")}
    with pytest.raises(ValueError, match="no ITA category"):
        sample_ita(
            np.random.default_rng(0), PhantomConfig(ita_range=(0.0, 30.0), ita_bin_weights=(1, 1, 0, 0, 0, 1))
        )


@pytest.mark.parametrize(
    "weights", [(1, 1, 1), (1, 1, 1, 1, 1, -1), (0, 0, 0, 0, 0, 0), (1, 1, 1, 1, 1, float("nan")), "abcdef"]
)
def test_bad_weights_are_refused(weights):
    with pytest.raises(ValueError, match="ita_bin_weights"):
        PhantomConfig(ita_bin_weights=weights)


def test_recorded_artifacts_are_exactly_those_drawn():
    """Every drawn artifact changed pixels (its mask is set); one that was not drawn left no mask."""
    config = PhantomConfig(
        width=96, height=72, hair_rate=0.5, ruler_rate=0.5, ink_rate=0.5, vignette_rate=0.5, bubbles_rate=0.5
    )
    rng = np.random.default_rng(2)
    seen = set()
    for _ in range(30):
        sample = render_phantom("MEL", rng, config)
        seen |= sample.artifacts
        masks = {"hair": sample.hair, "vignette": sample.vignette, "bubbles": sample.bubbles}
        for name, mask in masks.items():
            assert (name in sample.artifacts) == bool(mask.any())
        assert bool({"ruler", "ink"} & sample.artifacts) == bool(sample.ruler.any())
    assert seen == {"hair", "ruler", "ink", "vignette", "bubbles"}
