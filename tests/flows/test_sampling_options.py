"""balance_skin_tone in a grid: kept out of DermGAN's training request, put on the training mix's sample
request, refused for generators that cannot take it; without it the sample request is unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from skingenbench.flows import tasks
from skingenbench.flows.grid import GridError
from skingenbench.flows.sampling_options import check_sampling_options, sampling_conditioning, training_config
from skingenbench.flows.validation import validate_grid

from skingenbench.api.v1 import generation_pb2


def test_training_config_drops_the_option_and_conditioning_carries_it():
    config = {"train_steps": 10, "balance_skin_tone": True}
    assert training_config(config) == {"train_steps": 10}
    assert sampling_conditioning(config) == ({"balance_skin_tone": True},)
    assert sampling_conditioning({"train_steps": 10}) == ()
    assert sampling_conditioning({"balance_skin_tone": False}) == ()


def test_only_dermgan_takes_it_and_only_as_a_bool():
    assert check_sampling_options({"dermgan": {"balance_skin_tone": True}}) == []
    assert "only dermgan" in check_sampling_options({"ddpm": {"balance_skin_tone": True}})[0]
    assert "true or false" in check_sampling_options({"dermgan": {"balance_skin_tone": "yes"}})[0]


def _grid_file(tmp_path, generator_config):
    grid = yaml.safe_load(Path("flows/grids/demo.yaml").read_text())
    grid["generator_config"] = generator_config
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return str(path)


def test_the_grid_validates_with_the_option_on_dermgan_and_refuses_it_elsewhere(tmp_path):
    grid = validate_grid(
        _grid_file(tmp_path, {"dermgan": {"train_steps": 10, "balance_skin_tone": True}}),
        check_data_paths=False,
    )
    assert grid.generator_config["dermgan"]["balance_skin_tone"] is True
    with pytest.raises(GridError, match="only dermgan"):
        validate_grid(_grid_file(tmp_path, {"ddpm": {"balance_skin_tone": True}}), check_data_paths=False)


def test_sample_request_is_unchanged_without_the_option(monkeypatch):
    sent = []

    def fake_run(wiring, stage, stub, method, request, label):
        sent.append(request)
        return type("Outcome", (), {"result": {}})()

    monkeypatch.setattr(tasks, "_run", fake_run)
    monkeypatch.setattr(tasks, "_ref", lambda outcome: {})
    tasks.sample.fn(None, "s3://m", 8, 0, "x")
    tasks.sample.fn(None, "s3://m", 8, 0, "x", {"balance_skin_tone": True})
    before = generation_pb2.SampleRequest(model_uri="s3://m", count=8, seed=0)
    assert sent[0].SerializeToString(deterministic=True) == before.SerializeToString(deterministic=True)
    assert not sent[0].HasField("conditioning")
    assert sent[1].conditioning.balance_skin_tone and sent[1].conditioning.label == ""
