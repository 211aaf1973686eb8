"""The generic training loop: data order, augmentation, progress, checkpoints, resume, stop.

It knows nothing about what it trains: every generator is a ``GeneratorBackend``. What makes a
restarted run continue exactly where the old one stopped:

- Data order is a pure function of (seed, step). The loop reads an endless stream of epochs; epoch e
  is a permutation of the data set drawn from ``numpy.random.default_rng([seed, e])``, together with one
  mirror decision per image. Batches are consecutive slices of that stream and always full (a batch may
  span two epochs), so step s uses stream positions [s * B, (s + 1) * B) whatever happened before.
- The backend's ``state()`` carries its weights, optimiser, EMA and noise generator.

A checkpoint is ``{"format", "loop": {seed, dataset_size, total_steps, step}, "backend": state}``: a
nested dict of tensors and JSON scalars for ``skingenbench.services.core.checkpoint.state_to_bytes``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.generation.core.backend import GeneratorBackend

CHECKPOINT_FORMAT = "skingenbench.generation.training/1"

ProgressCallback = Callable[[int, int, dict[str, float]], None]
SaveCallback = Callable[[int, dict[str, Any]], None]


@dataclass
class TrainingResult:
    step: int  # the backend's step when the loop returned
    total_steps: int
    interrupted: bool  # True: should_stop() ended the run early (a checkpoint was written first)
    resumed_from: int | None  # the checkpoint step the run continued from, None for a fresh start
    metrics: dict[str, float] = field(default_factory=dict)  # the last progress report


class DataOrder:
    """Which item, mirrored or not, sits at each position of the endless training stream."""

    def __init__(self, seed: int, dataset_size: int, hflip_probability: float) -> None:
        self.seed = seed
        self.dataset_size = dataset_size
        self.hflip_probability = hflip_probability
        self._epochs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(permutation of item indices, mirror flags) of one epoch; the last two epochs are cached."""
        if epoch not in self._epochs:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(self.dataset_size)
            flips = rng.random(self.dataset_size) < self.hflip_probability
            self._epochs = {e: plan for e, plan in self._epochs.items() if e == epoch - 1}
            self._epochs[epoch] = (order, flips)
        return self._epochs[epoch]

    def batch(self, step: int, batch_size: int) -> list[tuple[int, bool]]:
        picks = []
        for position in range(step * batch_size, (step + 1) * batch_size):
            order, flips = self.epoch(position // self.dataset_size)
            offset = position % self.dataset_size
            picks.append((int(order[offset]), bool(flips[offset])))
        return picks


def to_training_tensor(image: Any, resolution: int) -> torch.Tensor:
    """An image -> float [3, R, R] in [-1, 1].

    Accepts uint8 [H, W, 3] (numpy, torch or an RGB PIL image) or a float tensor [3, H, W] already in
    [-1, 1]. Square images are resized (bilinear, antialiased) when their side differs from R; a
    non-square image is refused: cropping is the preprocessing stage's decision, not the generator's.
    """
    if isinstance(image, PILImage.Image):
        if image.mode != "RGB":
            raise InvalidArgument(
                f"training images must be RGB, got a PIL image in mode {image.mode!r}", field="dataset"
            )
        image = np.asarray(image)
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise InvalidArgument(
            f"training image of type {type(image).__name__} is not an array", field="dataset"
        )
    if image.dtype == torch.uint8:
        if image.ndim != 3 or image.shape[2] != 3:
            raise InvalidArgument(
                f"uint8 training images must be [H, W, 3], got {list(image.shape)}", field="dataset"
            )
        tensor = image.permute(2, 0, 1).float() / 127.5 - 1.0
    elif image.is_floating_point():
        if image.ndim != 3 or image.shape[0] != 3:
            raise InvalidArgument(
                f"float training images must be [3, H, W] in [-1, 1], got {list(image.shape)}",
                field="dataset",
            )
        low, high = float(image.min()), float(image.max())
        if low < -1.001 or high > 1.001:
            raise InvalidArgument(
                f"float training images must lie in [-1, 1], got [{low:.3g}, {high:.3g}]", field="dataset"
            )
        tensor = image.float()
    else:
        raise InvalidArgument(f"training images must be uint8 or float, got {image.dtype}", field="dataset")
    height, width = tensor.shape[1:]
    if height != width:
        raise InvalidArgument(
            f"training images must be square, got {height}x{width}",
            field="dataset",
            hint="crop or resize in the preprocessing stage",
        )
    if height != resolution:
        tensor = F.interpolate(
            tensor[None], size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True
        )[0]
    return tensor


def to_condition_tensor(condition: Any, resolution: int) -> torch.Tensor:
    """A condition map [H, W, C] (e.g. DermGAN's semantic map) -> float [C, R, R], nearest resize."""
    tensor = torch.as_tensor(np.asarray(condition) if not isinstance(condition, torch.Tensor) else condition)
    if tensor.ndim == 2:
        tensor = tensor[:, :, None]
    if tensor.ndim != 3:
        raise InvalidArgument(f"condition maps must be [H, W, C], got {list(tensor.shape)}", field="dataset")
    tensor = tensor.permute(2, 0, 1).float()
    if tuple(tensor.shape[1:]) != (resolution, resolution):
        tensor = F.interpolate(tensor[None], size=(resolution, resolution), mode="nearest")[0]
    return tensor


def _split_item(item: Any) -> tuple[Any, Any, Any]:
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise InvalidArgument(
            "dataset items must be (image, label) or (image, label, condition)", field="dataset"
        )
    return item[0], item[1], item[2] if len(item) == 3 else None


def make_batch(
    dataset: Sequence,
    picks: list[tuple[int, bool]],
    resolution: int,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Images [B, 3, R, R] in [-1, 1], integer labels (None unless every label is an int), conditions."""
    images, labels, conditions = [], [], []
    for index, mirror in picks:
        image, label, condition = _split_item(dataset[index])
        tensor = to_training_tensor(image, resolution)
        condition_tensor = to_condition_tensor(condition, resolution) if condition is not None else None
        if mirror:  # mirror the condition map with its image, or the pair no longer matches
            tensor = tensor.flip(-1)
            condition_tensor = condition_tensor.flip(-1) if condition_tensor is not None else None
        images.append(tensor)
        labels.append(label)
        conditions.append(condition_tensor)
    label_tensor = None
    if all(isinstance(lb, (int, np.integer)) and not isinstance(lb, bool) for lb in labels):
        label_tensor = torch.tensor([int(lb) for lb in labels], dtype=torch.long)
    maps = [c for c in conditions if c is not None]
    if maps and len(maps) != len(conditions):
        raise InvalidArgument("some dataset items have a condition map and others do not", field="dataset")
    condition_tensor = torch.stack(maps) if maps else None
    return torch.stack(images), label_tensor, condition_tensor


def _check_resume(state: Any, seed: int, dataset_size: int) -> dict[str, Any]:
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise FailedPrecondition(
            f"not a training checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r})"
        )
    loop = state["loop"]
    if loop["seed"] != seed:
        raise FailedPrecondition(f"checkpoint was trained with seed {loop['seed']}, this run has seed {seed}")
    if loop["dataset_size"] != dataset_size:
        raise FailedPrecondition(
            f"checkpoint was trained on {loop['dataset_size']} images, this data set has "
            f"{dataset_size}: the data order would not continue"
        )
    return state["backend"]


def train(
    backend: GeneratorBackend,
    dataset: Sequence,
    *,
    seed: int,
    total_steps: int | None = None,
    on_progress: ProgressCallback | None = None,
    save_checkpoint: SaveCallback | None = None,
    load_checkpoint: Callable[[], dict[str, Any] | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_every: int | None = None,
    progress_every: int = 1,
) -> TrainingResult:
    """Train ``backend`` (already built with ``total_steps`` > 0) on ``dataset`` until ``total_steps``.

    ``dataset[i]`` is ``(image, label)`` or ``(image, label, condition_map)``. ``total_steps`` defaults to
    the backend's planned steps; ``checkpoint_every`` to its configured cadence (0: only at the end and
    on stop). ``on_progress(step, total, metrics)`` gets window means of the backend's metrics plus
    ``images_per_second`` and ``epoch`` every ``progress_every`` steps and at the end.
    """
    if backend.planned_steps <= 0:
        raise FailedPrecondition("the backend was not built for training", hint="build(seed, total_steps=N)")
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise InvalidArgument(
            "the training data must be a sequence (len and indexing) so that its order can be "
            "replayed on resume",
            field="dataset",
            hint="wrap an iterable in list(...)",
        )
    dataset_size = len(dataset)
    if dataset_size == 0:
        raise InvalidArgument("the training data set is empty", field="dataset")
    total = backend.planned_steps if total_steps is None else total_steps
    if total < 1 or total > backend.planned_steps:
        raise InvalidArgument(
            f"total_steps must be in [1, {backend.planned_steps}] (the steps the backend's "
            f"schedule was planned for), got {total}",
            field="total_steps",
        )
    every = backend.checkpoint_every_steps if checkpoint_every is None else checkpoint_every
    if every < 0 or progress_every < 1:
        raise InvalidArgument(
            "checkpoint_every must be >= 0 and progress_every >= 1", field="checkpoint_every"
        )

    resumed_from = None
    state = load_checkpoint() if load_checkpoint is not None else None
    if state is not None:
        backend.load_state(_check_resume(state, seed, dataset_size))
        resumed_from = backend.step
    if backend.step > total:
        raise FailedPrecondition(f"checkpoint is at step {backend.step}, beyond total_steps {total}")

    def checkpoint() -> None:
        if save_checkpoint is not None:
            loop = {"seed": seed, "dataset_size": dataset_size, "total_steps": total, "step": backend.step}
            save_checkpoint(
                backend.step, {"format": CHECKPOINT_FORMAT, "loop": loop, "backend": backend.state()}
            )

    order = DataOrder(seed, dataset_size, backend.hflip_probability)
    batch_size = backend.batch_size
    last_saved = backend.step
    window: list[dict[str, float]] = []
    window_start = time.perf_counter()
    reported: dict[str, float] = {}

    while backend.step < total:
        if should_stop is not None and should_stop():
            if backend.step > last_saved:
                checkpoint()
            return TrainingResult(backend.step, total, True, resumed_from, reported)
        images, labels, conditions = make_batch(
            dataset, order.batch(backend.step, batch_size), backend.resolution
        )
        window.append(backend.train_step(images, labels, conditions))
        step = backend.step
        if step % progress_every == 0 or step == total:
            elapsed = max(time.perf_counter() - window_start, 1e-9)
            reported = {key: float(np.mean([m[key] for m in window if key in m])) for key in window[-1]}
            reported["images_per_second"] = len(window) * batch_size / elapsed
            reported["epoch"] = step * batch_size / dataset_size
            if on_progress is not None:
                on_progress(step, total, reported)
            window, window_start = [], time.perf_counter()
        if every and step % every == 0:
            checkpoint()
            last_saved = step
    if backend.step > last_saved:
        checkpoint()
    return TrainingResult(backend.step, total, False, resumed_from, reported)
