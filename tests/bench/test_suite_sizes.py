"""The classification and generation suites of ``make bench`` process the sizes they ask for (issue 20, item 3):
each measured child checks what it trained on or generated against what it was asked for and fails otherwise,
so a ratio never silently divides by a size that was not processed."""

from __future__ import annotations

import pytest

from bench import classification, generation


@pytest.fixture(scope="module")
def stored_images(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("bench-classification"))
    return folder, classification.prepare_images(folder, 6, 32)["items"]


def test_prepared_images_are_the_requested_count(stored_images):
    assert len(stored_images[1]) == 6


@pytest.mark.parametrize("target", [classification.project_in_memory, classification.project_from_store])
def test_the_training_children_train_on_every_requested_image(stored_images, target):
    folder, items = stored_images
    assert target(folder, items, "resnet18") > 0


def test_a_training_child_that_skips_images_fails(stored_images, monkeypatch):
    from skingenbench.services.classification.core import training

    folder, items = stored_images
    full = training.epoch_batches
    monkeypatch.setattr(training, "epoch_batches", lambda *a: full(*a)[:-1])  # one batch fewer per epoch
    with pytest.raises(RuntimeError, match="asked for 6 images"):
        classification.project_in_memory(folder, items, "resnet18")
    with pytest.raises(RuntimeError, match="12 images"):
        classification.project_from_store(folder, items, "resnet18")


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("bench-generation"))
    return folder, generation.prepare_generator(folder, images=4, train_steps=1)["model"]


@pytest.mark.parametrize("target", [generation.generate_over_grpc, generation.generate_in_process])
def test_the_generate_children_return_every_requested_image(trained_model, target, monkeypatch):
    folder, model = trained_model
    monkeypatch.setattr(generation, "GENERATE_SAMPLER", {"sampler": "ddim", "steps": 5})  # seconds, not tens
    assert target(folder, model, 3) > 0


def test_a_generate_child_that_returns_fewer_images_fails(trained_model, monkeypatch):
    from skingenbench.services.generation.core import sampling

    folder, model = trained_model
    monkeypatch.setattr(sampling, "image_seeds", lambda count, seed: list(range(seed, seed + count - 1)))
    monkeypatch.setattr(generation, "GENERATE_SAMPLER", {"sampler": "ddim", "steps": 2})
    with pytest.raises(RuntimeError, match="asked for 3 images"):
        generation.generate_in_process(folder, model, 3)
