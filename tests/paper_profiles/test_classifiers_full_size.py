"""The five classifiers' ``paper`` profiles at 224 px on the CPU's copy of the GPU path (bf16 autocast,
channels_last; see conftest.py): one optimiser step of the project's training loop and one inference batch.

The paper recipe as configured (SGD, RandomResizedCrop 224 from 256-px images, Resize 256 + CenterCrop 224 for
evaluation) with random initialisation instead of the ImageNet file (``pretrained="none"``: no weights are shipped
here; the layers and shapes are the same) and a batch of 2 instead of 64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skingenbench.services.classification.core.inference import predict_probabilities
from skingenbench.services.classification.core.training import train_classifier
from skingenbench.services.core.classifiers.models import CLASSIFIERS, create_classifier

# The timeout allows for a CPU shared with other jobs (a step is tens of seconds on two idle cores).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

OVERRIDES = {"pretrained": "none", "epochs": 1, "batch_size": 2, "eval_batch_size": 2, "loader_threads": 0}
NAMES = ("resnet18", "resnet50", "vgg16", "efficientnet_b0", "vit_base_patch16_224")


def test_the_five_reference_classifiers_are_the_ones_registered():
    assert set(CLASSIFIERS.names()) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_paper_profile_trains_one_step_and_predicts_at_224_under_bf16(name, probe):
    model, _, config = create_classifier(name, "paper", OVERRIDES)
    assert (config.image_size, config.resize_size, config.amp, config.channels_last) == (224, 256, True, True)
    rng = np.random.default_rng(0)
    images = [(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), label) for label in (0, 3, 1)]
    before = probe.parameters_copy(model)
    with probe.calls_recorded(model) as calls:
        outcome = train_classifier(model, config, images[:2], images[2:], seed=0, device="cpu")
    # One training call (batch 2) then one validation call (batch 1), both on the GPU path.
    assert len(calls) == 2
    probe.assert_on_gpu_path(calls)
    assert all(call["channels_last"] for call in calls)
    assert probe.changed_fraction(before, model) > 0.5
    record = outcome.history[0]
    assert np.isfinite(record["train_loss"]) and record["train_images"] == 2
    probabilities = predict_probabilities(model, images, config, device="cpu")
    assert probabilities.shape == (3, 5) and probabilities.dtype == np.float64
    assert np.allclose(probabilities.sum(axis=1), 1.0) and np.isfinite(probabilities).all()
    first_conv = next(p for p in model.parameters() if p.ndim == 4)  # ViT's patch embedding included
    assert first_conv.is_contiguous(memory_format=torch.channels_last)
