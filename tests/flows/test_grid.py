"""Grid files: the shipped grids load, and a malformed grid gets an error naming the bad field."""

from __future__ import annotations

import pytest
import yaml
from skingenbench.flows.grid import (
    GRIDS_DIR,
    REFERENCE_EVALUATION_COUNT,
    GridError,
    load_grid,
    parse_grid,
)


def test_shipped_grids_load_with_every_axis():
    smoke = load_grid("smoke")
    assert smoke.profile == "tiny" and smoke.data.source == "phantom"
    assert set(smoke.preprocessing) == {"basic", "advanced"}
    assert {"stylegan2_ada", "ddpm"} <= set(smoke.generators) and len(smoke.classifiers) == 5
    names = [name for name, _, _ in smoke.pipelines()]
    assert {"A1", "A2", "A3", "A4", "B1", "B2", "B3", "B4"} <= set(names)
    paper = load_grid("paper")
    assert paper.profile == "paper" and paper.data.source == "ham10000" and len(paper.seeds) >= 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"classifiers": ["resnet19"]}, "classifiers[0]: unknown value 'resnet19'"),
        ({"preprocessing": ["basic", "fancy"]}, "preprocessing[1]: unknown value 'fancy'"),
        ({"data": {"source": "phantom", "colour": "x"}}, "data.colour: unknown field"),
        ({"split": {"train": 0.9, "val": 0.2, "test": 0.1}}, "split: train/val/test must"),
        ({"seeds": []}, "seeds:"),
        ({"profile": "huge"}, "profile:"),
        ({"synthetic_label": "XYZ"}, "synthetic_label:"),
        ({"learning_rate": 1}, "grid.learning_rate: unknown field"),
        ({"data": {"source": "ham10000"}}, "data.path: required"),
        ({"controllability": {"tones": [0]}}, "controllability.tones: unknown field"),
        ({"controllability": {"centres": [[0.5]]}}, "controllability.centres[0]: an [x, y] pair"),
        ({"controllability": {"ita_degrees": ["dark"]}}, "controllability.ita_degrees: a list of numbers"),
        ({"controllability": {"labels": ["MEL", "AK"]}}, "controllability.labels[1]: unknown value 'AK'"),
        ({"controllability": {"repeats": 0}}, "controllability.repeats: a positive integer"),
        ({"evaluation_count": -1}, "evaluation_count: must be >= 0"),
        ({"evaluation_count": 64.5}, "evaluation_count: an integer number of images, got 64.5"),
        ({"evaluation_count": "5000"}, "evaluation_count: an integer number of images, got '5000'"),
        ({"evaluation_count": True}, "evaluation_count: an integer number of images, got True"),
        ({"synthetic_count": -3}, "synthetic_count: must be >= 0"),
        ({"synthetic_count": 1.5}, "synthetic_count: an integer number of images, got 1.5"),
    ],
)
def test_malformed_grids_name_the_bad_field(tmp_path, change, message):
    data = yaml.safe_load((GRIDS_DIR / "smoke.yaml").read_text())
    data.update(change)
    with pytest.raises(GridError) as error:
        parse_grid(data)
    assert message in str(error.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(GridError, match="shipped grids: .*smoke"):
        load_grid("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(GridError, match="not valid YAML"):
        load_grid(str(bad))


def test_the_evaluation_count_is_its_own_field_with_the_reference_default():
    """FID/KID/IS are computed on ``evaluation_count`` images per generator (default 5,000, seeds 0–4999 as
    the reference study), separate from the ``synthetic_count`` mixed into training (default 0: as many as
    the real training melanomas)."""
    data = yaml.safe_load((GRIDS_DIR / "smoke.yaml").read_text())
    del data["evaluation_count"], data["synthetic_count"]
    defaults = parse_grid(data)
    assert defaults.evaluation_count == REFERENCE_EVALUATION_COUNT == 5000 and defaults.synthetic_count == 0
    assert load_grid("paper").evaluation_count == 5000 and load_grid("paper").synthetic_count == 0
    smoke = load_grid("smoke")
    assert 0 < smoke.evaluation_count < 2048  # fast, and small enough to show the FID warning
    assert parse_grid({**data, "evaluation_count": 0}).evaluation_count == 0  # 0: the training mix itself
    assert smoke.to_dict()["evaluation_count"] == smoke.evaluation_count  # recorded with the grid
