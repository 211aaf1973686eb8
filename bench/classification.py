"""Classifier training throughput: images/s per model (tiny on CPU; the paper profile with AMP and
channels_last when a GPU is present — the device is recorded beside the numbers)."""

from __future__ import annotations

from typing import Any


def run(quick: bool = False) -> dict[str, Any]:
    import torch
    from skingenbench.services.classification.core.training import measure_training_speed
    from skingenbench.services.core.classifiers.models import CLASSIFIERS
    from skingenbench.services.core.device import describe_device

    profile = "paper" if torch.cuda.is_available() else "tiny"
    names = ["resnet18", "efficientnet_b0"] if quick else CLASSIFIERS.names()
    return {
        "device": describe_device(),
        "profile": profile,
        "train_images_per_s": {
            name: round(float(measure_training_speed(name, profile)), 2) for name in names
        },
    }
