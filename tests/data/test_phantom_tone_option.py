"""A phantom set's skin-tone distribution is an import option (issue 18 item 2), so a grid can show
what a tone-skewed or tone-balanced training set does; without it nothing changes."""

from __future__ import annotations

import pytest
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.data.operations import PhantomSettings, import_source, phantom_settings
from skingenbench.services.platform.manifest_io import read_manifest
from skingenbench.services.platform.store import LocalFolderStore

DARK_ONLY = [0, 0, 0, 0, 0, 1]  # the six ITA bins, very light … dark (< −30°)


def _true_itas(store, options) -> list[float]:
    ref = import_source(
        store, "phantom", options={"count": 12, "width": 64, "height": 48, **options}, seed=3
    ).ref
    return [float(item.meta["ita"]) for item in read_manifest(store, ref.uri).items]


def test_the_tone_weights_decide_which_skin_tones_are_drawn(tmp_path):
    store = LocalFolderStore(tmp_path / "store")
    dark = _true_itas(store, {"ita_bin_weights": DARK_ONLY})
    assert all(ita < -30 for ita in dark), dark
    default = _true_itas(store, {})
    assert sum(ita > 10 for ita in default) > len(default) / 2  # skewed light, as HAM10000 is


def test_without_weights_the_import_address_is_the_one_it_always_had():
    # Before the option the address hashed exactly these three settings (dataclasses.asdict of the old class).
    assert PhantomSettings(10, 96, 72).address_settings() == {"count": 10, "width": 96, "height": 72}
    weighted = phantom_settings({"count": 10, "ita_bin_weights": DARK_ONLY}, 0)
    assert weighted.address_settings()["ita_bin_weights"] == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    "weights", [[1, 2], [0, 0, 0, 0, 0, 0], [-1, 1, 1, 1, 1, 1], "light"], ids=["short", "zero", "neg", "str"]
)
def test_bad_tone_weights_are_refused_before_anything_is_drawn(weights):
    with pytest.raises(InvalidArgument, match="ita_bin_weights"):
        phantom_settings({"count": 4, "ita_bin_weights": weights}, 0)


def test_a_grid_with_bad_tone_weights_fails_validation(tmp_path):
    import yaml
    from skingenbench.flows.grid import GridError
    from skingenbench.flows.validation import validate_grid

    grid = tmp_path / "tones.yaml"
    grid.write_text(
        yaml.safe_dump({"name": "tones", "data": {"source": "phantom", "ita_bin_weights": [1, 2]}})
    )
    with pytest.raises(GridError, match="data: phantom ita_bin_weights"):
        validate_grid(str(grid), check_data_paths=False)
