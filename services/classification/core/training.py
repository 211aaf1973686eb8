"""The classifier training loop: seeded, selected on the val split only, checkpointed, resumable.

What the loop guarantees:
- The test split is not an argument: it cannot be touched. After every epoch the model is scored on
  the val split and the weights of the best epoch by ``config.selection_metric`` (macro-F1 by
  default, or balanced accuracy; ties keep the earlier epoch) are what the run returns.
- Data order and augmentation are pure functions of the seed: epoch e visits the training set in the
  permutation drawn from ``default_rng([seed, e])``, the crop and flip of position p of that epoch come
  from ``default_rng([seed, e, p])`` (see ``data.train_transform``), and torch's global RNG (dropout,
  where a model has it) is re-seeded from (seed, epoch, step) before every step.
- So a run interrupted at any step and resumed from its checkpoint ends with the same weights as an
  uninterrupted one (bit for bit on a CPU; on CUDA up to non-deterministic kernels). A checkpoint is
  written after every epoch and when ``should_stop()`` turns true; it holds the model, optimizer,
  scheduler, best-so-far weights, history and the position in the epoch.
- The lr follows the reference: x ``lr_gamma`` after each epoch in ``lr_milestones`` (MultiStepLR).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from skingenbench.services.classification.core.data import train_transform
from skingenbench.services.classification.core.inference import predict_probabilities
from skingenbench.services.classification.core.metrics import global_metrics
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.classifiers.models import ClassifierConfig
from skingenbench.services.core.classifiers.placement import autocast, prepare, to_device
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument

CHECKPOINT_FORMAT = "skingenbench.classification.training/1"
ProgressCallback = Callable[[dict[str, float]], None]


@dataclass
class TrainingOutcome:
    best_state: dict[str, torch.Tensor]
    best_epoch: int  # 1-based
    best_metric: float | None  # the selection metric on val at best_epoch
    selection_metric: str
    history: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False  # should_stop() ended the run (a checkpoint was written first)
    resumed_from: dict[str, int] | None = None  # {"epoch", "step"} of the checkpoint continued from
    final_state: dict[str, torch.Tensor] = field(default_factory=dict)


def labels_of(images: Sequence) -> np.ndarray:
    labels = getattr(images, "labels", None)
    values = labels() if callable(labels) else [images[i][1] for i in range(len(images))]
    return np.asarray(values, dtype=np.int64)


def epoch_batches(seed: int, epoch: int, size: int, batch_size: int) -> list[np.ndarray]:
    """The epoch's permutation cut into batches; a last batch of one joins the previous (batch norm)."""
    order = np.random.default_rng([seed, epoch]).permutation(size)
    batches = [order[i : i + batch_size] for i in range(0, size, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """n / (C * n_c) per class present (scikit-learn's "balanced"); 0 for a class without images."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def build_optimizer(model: torch.nn.Module, config: ClassifierConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def _step_seed(seed: int, epoch: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, step]).generate_state(1)[0])


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


class _Loader:
    """Batches of (images [B, 3, S, S], labels [B]) with the next batch prepared while one trains."""

    def __init__(self, images: Sequence, config: ClassifierConfig, seed: int) -> None:
        self.images, self.config, self.seed = images, config, seed
        self.pool = ThreadPoolExecutor(config.loader_threads) if config.loader_threads else None

    def _load(self, epoch: int, position: int, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.images[int(index)]
        return train_transform(image, self.config, np.random.default_rng([self.seed, epoch, position])), label

    def _batch(
        self, epoch: int, start: int, indices: np.ndarray
    ) -> list[tuple[torch.Tensor, int]] | list[Future[tuple[torch.Tensor, int]]]:
        jobs = [(epoch, start + k, index) for k, index in enumerate(indices)]
        if self.pool is None:
            return [self._load(*job) for job in jobs]
        return [self.pool.submit(self._load, *job) for job in jobs]

    def epoch(self, epoch: int, batches: list[np.ndarray], first_step: int):
        starts = np.cumsum([0] + [len(b) for b in batches])
        pending = (
            self._batch(epoch, starts[first_step], batches[first_step]) if first_step < len(batches) else []
        )
        for step in range(first_step, len(batches)):
            current = pending
            if step + 1 < len(batches):
                pending = self._batch(epoch, starts[step + 1], batches[step + 1])
            pairs = [p.result() if isinstance(p, Future) else p for p in current]
            yield step, torch.stack([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


class _LoopState(TypedDict):
    """Where the loop is, as a checkpoint stores it: the run it belongs to and the progress of its epoch."""

    seed: int
    train_size: int
    val_size: int
    epochs: int
    epoch: int
    step: int
    loss_sum: float
    correct: int
    seen: int
    seconds: float


def _check_resume(state: dict[str, Any], seed: int, sizes: tuple[int, int], epochs: int) -> _LoopState:
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise FailedPrecondition(f"not a classifier training checkpoint (format {CHECKPOINT_FORMAT!r})")
    loop = state["loop"]
    if (loop["seed"], loop["train_size"], loop["val_size"], loop["epochs"]) != (seed, *sizes, epochs):
        raise FailedPrecondition(
            "the checkpoint belongs to another run (seed, data sizes or epochs differ): "
            f"{loop['seed']}, {loop['train_size']}, {loop['val_size']}, {loop['epochs']}"
        )
    return loop


def train_classifier(
    model: torch.nn.Module,
    config: ClassifierConfig,
    train_set: Sequence,
    val_set: Sequence,
    *,
    seed: int,
    device: str = "cpu",
    save_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    load_checkpoint: Callable[[], dict[str, Any] | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_progress: ProgressCallback | None = None,
    progress_every: int = 10,
    classes: Sequence[str] = CLASSES,
    checkpoint_every_s: float | None = None,
) -> TrainingOutcome:
    """Train ``model`` on ``train_set`` (``[i] -> (uint8 HWC image, class index)``), select on ``val_set``.

    ``checkpoint_every_s``: None saves after every epoch. A number saves after an epoch only once that many
    seconds have passed since the last save, and not after the last epoch (the caller stores the outcome
    next): a ViT-B/16 state is ~1 GB, and writing it every epoch cost 6.5 s an epoch. A stop request
    always saves first, so a cancelled or restarted run loses nothing either way."""
    if len(train_set) < 2 or len(val_set) < 1:
        raise InvalidArgument(
            f"training needs >= 2 training and >= 1 val images, got {len(train_set)} and {len(val_set)}"
        )
    model = prepare(model, config, device)
    optimizer = build_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.lr_milestones), config.lr_gamma)
    train_labels, val_labels = labels_of(train_set), labels_of(val_set)
    weights = class_weights(train_labels, len(classes)).to(device) if config.class_weighted_loss else None
    loop: _LoopState = {
        "seed": seed,
        "train_size": len(train_set),
        "val_size": len(val_set),
        "epochs": config.epochs,
        "epoch": 0,
        "step": 0,
        "loss_sum": 0.0,
        "correct": 0,
        "seen": 0,
        "seconds": 0.0,
    }
    best: dict[str, Any] = {"epoch": None, "metric": None, "model": None}
    history: list[dict[str, Any]] = []
    resumed_from = None
    state = load_checkpoint() if load_checkpoint is not None else None
    if state is not None:
        loop = _check_resume(state, seed, (len(train_set), len(val_set)), config.epochs).copy()
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scheduler.milestones = Counter(scheduler.milestones)  # JSON gives back a plain dict
        best, history = dict(state["best"]), list(state["history"])
        resumed_from = {"epoch": loop["epoch"], "step": loop["step"]}

    last_saved = time.monotonic()

    def epoch_checkpoint_due() -> bool:
        if checkpoint_every_s is None:
            return True
        return loop["epoch"] < config.epochs and time.monotonic() - last_saved >= checkpoint_every_s

    def checkpoint() -> None:
        nonlocal last_saved
        last_saved = time.monotonic()
        if save_checkpoint is not None:
            save_checkpoint(
                {
                    "format": CHECKPOINT_FORMAT,
                    "loop": dict(loop),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "best": best,
                    "history": history,
                }
            )

    loader = _Loader(train_set, config, seed)
    try:
        while loop["epoch"] < config.epochs:
            epoch = loop["epoch"]
            batches = epoch_batches(seed, epoch, len(train_set), config.batch_size)
            model.train()
            started = time.perf_counter() - loop["seconds"]
            for step, images, labels in loader.epoch(epoch, batches, loop["step"]):
                torch.manual_seed(_step_seed(seed, epoch, step))
                labels = labels.to(device)
                with autocast(config, device):
                    logits = model(to_device(images, config, device))
                loss = F.cross_entropy(logits.float(), labels, weight=weights)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loop["loss_sum"] += float(loss.detach()) * len(labels)
                loop["correct"] += int((logits.argmax(1) == labels).sum())
                loop["seen"] += len(labels)
                loop["step"] = step + 1
                loop["seconds"] = time.perf_counter() - started
                due = loop["step"] % progress_every == 0 or loop["step"] == len(batches)
                if on_progress is not None and due:
                    on_progress(_progress(loop, len(batches), optimizer))
                if should_stop is not None and should_stop() and loop["step"] < len(batches):
                    checkpoint()
                    return _outcome(best, history, config, True, resumed_from, model)
            record = _end_epoch(model, config, val_set, val_labels, device, loop, optimizer, classes)
            scheduler.step()
            score = -np.inf if record["val_metric"] is None else record["val_metric"]
            if best["epoch"] is None or score > (-np.inf if best["metric"] is None else best["metric"]):
                best = {
                    "epoch": epoch + 1,
                    "metric": record["val_metric"],
                    "model": _cpu_copy(model.state_dict()),
                }
            record["is_best"] = best["epoch"] == epoch + 1
            history.append(record)
            if on_progress is not None:
                on_progress(
                    {
                        **_progress(loop, len(batches), optimizer),
                        **{k: v for k, v in record.items() if k.startswith("val_") and v is not None},
                    }
                )
            loop.update(
                {"epoch": epoch + 1, "step": 0, "loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
            )
            stopping = should_stop is not None and should_stop() and loop["epoch"] < config.epochs
            if stopping or epoch_checkpoint_due():
                checkpoint()
            if stopping:
                return _outcome(best, history, config, True, resumed_from, model)
    finally:
        loader.close()
    return _outcome(best, history, config, False, resumed_from, model)


def _progress(loop: _LoopState, steps: int, optimizer) -> dict[str, float]:
    seen = max(loop["seen"], 1)
    return {
        "epoch": loop["epoch"] + 1,
        "step": loop["step"],
        "steps": steps,
        "loss": loop["loss_sum"] / seen,
        "images_per_s": loop["seen"] / loop["seconds"] if loop["seconds"] else 0.0,
        "lr": optimizer.param_groups[0]["lr"],
    }


def _end_epoch(
    model,
    config: ClassifierConfig,
    val_set: Sequence,
    val_labels: np.ndarray,
    device: str,
    loop: _LoopState,
    optimizer,
    classes: Sequence[str],
) -> dict[str, Any]:
    probs = predict_probabilities(model, val_set, config, device)
    scores = global_metrics(val_labels, probs, classes)
    seen = max(loop["seen"], 1)
    return {
        "epoch": loop["epoch"] + 1,
        "lr": optimizer.param_groups[0]["lr"],
        "train_loss": loop["loss_sum"] / seen,
        "train_accuracy": loop["correct"] / seen,
        "train_images": loop["seen"],
        "images_per_s": loop["seen"] / loop["seconds"] if loop["seconds"] else 0.0,
        "train_seconds": loop["seconds"],
        "val_macro_f1": scores["macro_f1"],
        "val_balanced_accuracy": scores["balanced_accuracy"],
        "val_accuracy": scores["accuracy"],
        "val_metric": scores[config.selection_metric],
    }


def _outcome(
    best: dict[str, Any],
    history: list,
    config: ClassifierConfig,
    interrupted: bool,
    resumed_from: dict[str, int] | None,
    model: torch.nn.Module,
) -> TrainingOutcome:
    return TrainingOutcome(
        best_state=best["model"] or {},
        best_epoch=best["epoch"] or 0,
        best_metric=best["metric"],
        selection_metric=config.selection_metric,
        history=list(history),
        interrupted=interrupted,
        resumed_from=resumed_from,
        final_state=_cpu_copy(model.state_dict()),
    )


def measure_training_speed(
    name: str, profile: str = "tiny", images: int = 64, epochs: int = 2, device: str = "", seed: int = 0
) -> float:
    """Training images/s of a registered classifier on random images (last epoch: warm caches), for
    ``make bench``. On CUDA it runs with the profile's AMP (bf16) and channels_last settings."""
    from skingenbench.services.core.classifiers.models import create_classifier
    from skingenbench.services.core.device import select_device

    rng = np.random.default_rng(seed)
    model, _, config = create_classifier(name, profile, {"pretrained": "none", "epochs": epochs})
    side = config.resize_size
    data = [(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), i % len(CLASSES)) for i in range(images)]
    outcome = train_classifier(model, config, data, data[:2], seed=seed, device=device or select_device())
    return float(outcome.history[-1]["images_per_s"])
