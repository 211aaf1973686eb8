"""The generic training loop on the DDPM backend: learning, checkpoints, exact resume, stop, data order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skingenbench.services.core.checkpoint import state_from_bytes, state_to_bytes
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.generation.core.registry import create_backend
from skingenbench.services.generation.core.training import DataOrder, make_batch, to_training_tensor, train

SMALL = {
    "resolution": 16,
    "num_train_timesteps": 50,
    "batch_size": 8,
    "learning_rate": 2e-3,
    "lr_warmup_steps": 2,
    "ema_max_decay": 0.9,
    "checkpoint_every_steps": 0,
}


def coloured_blobs(count: int, size: int = 16, seed: int = 0) -> list[tuple[np.ndarray, int]]:
    """Flat skin-like backgrounds with one darker disc each: a data set a tiny DDPM can learn quickly."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    items = []
    for _ in range(count):
        image = np.empty((size, size, 3), np.uint8)
        image[:] = rng.integers(150, 240, 3)
        cy, cx = rng.integers(4, size - 4, 2)
        radius = rng.integers(2, 5)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = rng.integers(20, 120, 3)
        items.append((image, 3))
    return items


def built_backend(total_steps: int, seed: int = 0, **overrides):
    backend = create_backend("ddpm", "tiny", {**SMALL, **overrides}, device="cpu")
    backend.build(seed, total_steps=total_steps)
    return backend


class Recorder:
    """Progress and checkpoint callbacks that remember what they saw; checkpoints go through bytes."""

    def __init__(self) -> None:
        self.progress: list[tuple[int, int, dict[str, float]]] = []
        self.saved: dict[int, tuple[bytes, bytes]] = {}

    def on_progress(self, step: int, total: int, metrics: dict[str, float]) -> None:
        self.progress.append((step, total, metrics))

    def save_checkpoint(self, step: int, state: dict) -> None:
        self.saved[step] = state_to_bytes(state)  # pickle-free, as the service will store it

    def latest(self) -> dict | None:
        return state_from_bytes(*self.saved[max(self.saved)]) if self.saved else None

    def losses(self) -> dict[int, float]:
        return {step: metrics["loss"] for step, _, metrics in self.progress}


def test_tiny_ddpm_loss_goes_down():
    backend = built_backend(60, lr_schedule="constant")
    recorder = Recorder()
    result = train(backend, coloured_blobs(32), seed=0, on_progress=recorder.on_progress)
    losses = [metrics["loss"] for _, _, metrics in recorder.progress]
    assert result.step == 60 and not result.interrupted and len(losses) == 60
    first, last = np.mean(losses[:15]), np.mean(losses[-15:])
    assert last < 0.6 * first, (first, last)
    assert recorder.progress[-1][2]["images_per_second"] > 0 and recorder.progress[-1][2]["epoch"] == 15.0


def test_resume_after_a_kill_continues_bit_exactly():
    data = coloured_blobs(20)  # 20 images, batches of 8: batches span epoch boundaries
    uninterrupted = built_backend(8)
    reference = Recorder()
    train(uninterrupted, data, seed=5, on_progress=reference.on_progress)

    class Killed(Exception):
        pass

    first_life = built_backend(8)
    recorder = Recorder()

    def die_after_step_5(step, total, metrics):
        recorder.on_progress(step, total, metrics)
        if step == 5:
            raise Killed

    with pytest.raises(Killed):
        train(
            first_life,
            data,
            seed=5,
            on_progress=die_after_step_5,
            save_checkpoint=recorder.save_checkpoint,
            checkpoint_every=4,
        )
    assert sorted(recorder.saved) == [4]
    del first_life  # the process is gone; only the checkpoint bytes survive

    second_life = built_backend(8)
    resumed = Recorder()
    result = train(
        second_life,
        data,
        seed=5,
        on_progress=resumed.on_progress,
        load_checkpoint=recorder.latest,
        save_checkpoint=resumed.save_checkpoint,
        checkpoint_every=4,
    )
    assert result.resumed_from == 4 and result.step == 8 and not result.interrupted
    assert [step for step, _, _ in resumed.progress] == [5, 6, 7, 8]  # the step counter continues
    assert resumed.losses() == {s: loss for s, loss in reference.losses().items() if s > 4}  # bit-exact
    final, expected = second_life.state(), uninterrupted.state()
    for name, tensor in expected["unet"].items():
        assert torch.equal(final["unet"][name], tensor), name
    for a, b in zip(final["ema"]["shadow_params"], expected["ema"]["shadow_params"], strict=True):
        assert torch.equal(a, b)
    for index, moments in expected["optimizer"]["state"].items():
        assert torch.equal(final["optimizer"]["state"][index]["exp_avg_sq"], moments["exp_avg_sq"])
    assert final["lr_scheduler"]["last_epoch"] == expected["lr_scheduler"]["last_epoch"] == 8
    assert sorted(resumed.saved) == [8]


def test_should_stop_checkpoints_and_returns_interrupted():
    data = coloured_blobs(12)
    backend = built_backend(6)
    recorder = Recorder()
    result = train(
        backend, data, seed=1, save_checkpoint=recorder.save_checkpoint, should_stop=lambda: backend.step >= 3
    )
    assert result.interrupted and result.step == 3 and sorted(recorder.saved) == [3]
    saved = recorder.latest()
    assert saved["loop"]["step"] == saved["backend"]["step"] == 3
    # A restarted job picks the checkpoint up and finishes; the end is checkpointed too.
    restarted = built_backend(6)
    result = train(
        restarted, data, seed=1, save_checkpoint=recorder.save_checkpoint, load_checkpoint=recorder.latest
    )
    assert result.resumed_from == 3 and result.step == 6 and not result.interrupted
    assert sorted(recorder.saved) == [3, 6]


def test_checkpoints_every_n_steps_and_at_the_end():
    recorder = Recorder()
    train(
        built_backend(7),
        coloured_blobs(8),
        seed=0,
        save_checkpoint=recorder.save_checkpoint,
        checkpoint_every=3,
    )
    assert sorted(recorder.saved) == [3, 6, 7]


def test_resume_refuses_a_different_seed_or_data_set():
    recorder = Recorder()
    train(built_backend(2), coloured_blobs(8), seed=0, save_checkpoint=recorder.save_checkpoint)
    with pytest.raises(FailedPrecondition, match="seed"):
        train(built_backend(2), coloured_blobs(8), seed=1, load_checkpoint=recorder.latest)
    with pytest.raises(FailedPrecondition, match="images"):
        train(built_backend(2), coloured_blobs(9), seed=0, load_checkpoint=recorder.latest)
    with pytest.raises(FailedPrecondition, match="not built for training"):
        train(built_backend(0), coloured_blobs(8), seed=0)
    with pytest.raises(InvalidArgument, match="total_steps"):
        train(built_backend(2), coloured_blobs(8), seed=0, total_steps=3)
    with pytest.raises(InvalidArgument, match="sequence"):
        train(built_backend(2), iter(coloured_blobs(8)), seed=0)


def test_data_order_is_a_function_of_seed_and_step():
    order = DataOrder(seed=3, dataset_size=10, hflip_probability=0.5)
    stream = [pick for step in range(5) for pick in order.batch(step, 4)]  # two whole epochs
    assert sorted(i for i, _ in stream[:10]) == list(range(10)) == sorted(i for i, _ in stream[10:])
    assert stream[:10] != stream[10:]  # each epoch reshuffles
    assert DataOrder(3, 10, 0.5).batch(3, 4) == order.batch(3, 4)  # replayable from the step alone
    assert DataOrder(4, 10, 0.5).batch(0, 4) != order.batch(0, 4)
    flips = [flip for step in range(250) for _, flip in order.batch(step, 4)]
    assert 0.4 < np.mean(flips) < 0.6
    assert not any(flip for step in range(5) for _, flip in DataOrder(3, 10, 0.0).batch(step, 4))


def test_images_are_scaled_resized_and_mirrored_with_their_condition_maps():
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, :16] = 255  # left half white
    tensor = to_training_tensor(image, 16)
    assert tensor.shape == (3, 16, 16) and tensor.min() == -1.0 and tensor.max() == 1.0
    assert torch.equal(to_training_tensor(torch.from_numpy(image), 32), to_training_tensor(image, 32))
    condition = np.zeros((16, 16, 1), np.uint8)
    condition[:, :8] = 1  # the map marks the white half
    images, labels, conditions = make_batch([(image, 0, condition)], [(0, True)], 16)
    assert images[0, 0, 0, -1] == 1.0 and images[0, 0, 0, 0] == -1.0  # mirrored: white is now right
    assert conditions[0, 0, 0, -1] == 1.0 and conditions[0, 0, 0, 0] == 0.0  # and so is its map
    assert labels.tolist() == [0]
    assert make_batch([(image, "MEL")], [(0, False)], 16)[1] is None  # only integer labels are passed on
    with pytest.raises(InvalidArgument, match="square"):
        to_training_tensor(np.zeros((32, 24, 3), np.uint8), 16)
    with pytest.raises(InvalidArgument, match=r"\[-1, 1\]"):
        to_training_tensor(torch.full((3, 16, 16), 2.0), 16)
    with pytest.raises(InvalidArgument, match=r"\[H, W, 3\]"):
        to_training_tensor(np.zeros((16, 16, 4), np.uint8), 16)
