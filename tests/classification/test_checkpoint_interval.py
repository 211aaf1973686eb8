"""The resumable state is written at an interval, not every epoch, and always when a run is stopped."""

from __future__ import annotations

import numpy as np
from skingenbench.services.classification.core.training import train_classifier
from skingenbench.services.core.classifiers.models import create_classifier


def _run(checkpoint_every_s, stop_at_step=None):
    rng = np.random.default_rng(0)
    model, _, config = create_classifier(
        "resnet18", "tiny", {"pretrained": "none", "epochs": 3, "batch_size": 4}
    )
    side = config.resize_size
    data = [(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), i % 5) for i in range(8)]
    saved, steps = [], []
    outcome = train_classifier(
        model,
        config,
        data,
        data[:2],
        seed=0,
        save_checkpoint=lambda state: saved.append(state["loop"]["epoch"]),
        should_stop=(lambda: len(steps) >= stop_at_step) if stop_at_step else None,
        on_progress=lambda event: steps.append(event["step"]),
        progress_every=1,
        checkpoint_every_s=checkpoint_every_s,
    )
    return outcome, saved


def test_every_epoch_by_default_at_an_interval_when_asked_and_always_on_stop():
    _, every_epoch = _run(None)
    assert every_epoch == [1, 2, 3]
    outcome, rarely = _run(3600.0)
    assert rarely == [] and not outcome.interrupted and len(outcome.history) == 3
    _, eager = _run(0.0)
    assert eager == [1, 2]  # never after the last epoch: the caller stores the outcome next
    stopped, on_stop = _run(3600.0, stop_at_step=3)  # two steps per epoch: stops inside epoch 2
    assert stopped.interrupted and on_stop == [1]
