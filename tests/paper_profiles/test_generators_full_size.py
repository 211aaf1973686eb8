"""Every generator's ``paper`` profile at its real resolution (256 px) on the CPU's copy of the GPU path
(bf16 autocast, channels_last; see conftest.py): one training step and one sampling call.

Only the batch is smaller than the paper's (2 instead of StyleGAN2-ADA's 32 and DDPM's 16; DermGAN's 4): the
networks, their layouts and every phase of a step are the paper's. StyleGAN2-ADA's first step runs all four
phases (G main, lazy path-length, D main, lazy R1: step 0 is a multiple of every interval), so the double
backward of both regularisers runs under autocast. DDPM's paper profile asks for fp16, which the CPU path runs
as bf16 (no loss scaler: the scaler is CUDA fp16's only). DermGAN's paper profile trains in fp32; the test runs it
with ``mixed_precision="bf16"``, the option its config offers, so that its autocast path is the one exercised.

Each test is marked slow: a full-size step costs tens of CPU seconds (a 256-px StyleGAN2 step at batch 2 is
~30 CPU s).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skingenbench.services.generation.core.backend import SamplerOptions
from skingenbench.services.generation.core.registry import create_backend

# The timeout allows for a CPU shared with other jobs (a step is tens of seconds on two idle cores).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SIZE = 256
LESION = {"label": "MEL", "lesion_area_fraction": 0.15, "center_x": 0.5, "center_y": 0.5, "ita_degrees": 35.0}


def real_batch(count: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(count, 3, SIZE, SIZE, generator=generator) * 2 - 1


def assert_finite(metrics: dict[str, float]) -> None:
    assert metrics and all(math.isfinite(value) for value in metrics.values()), metrics


def assert_images(images: np.ndarray, count: int) -> None:
    assert images.shape == (count, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert images.std() > 0  # not a constant (NaN becomes 0 after the uint8 clamp)


def test_stylegan2_ada_paper_profile_trains_and_samples_at_256_under_bf16(probe):
    backend = create_backend("stylegan2_ada", "paper", {"batch_size": 2}, device="cpu")
    backend.build(0, total_steps=2)
    assert backend.resolution == SIZE and backend.autocast_dtype == torch.bfloat16
    assert backend.memory_format == torch.channels_last
    generator_before, critic_before = probe.parameters_copy(backend.G), probe.parameters_copy(backend.D)
    with probe.calls_recorded(backend.D) as critic_calls, probe.calls_recorded(backend.G) as generator_calls:
        metrics = backend.train_step(real_batch())
    assert_finite(metrics)
    assert {"loss_G", "pl_penalty", "loss_D", "r1_penalty"} <= set(metrics)  # all four phases ran
    probe.assert_on_gpu_path(critic_calls)
    probe.assert_on_gpu_path(generator_calls, images=False)
    assert probe.changed_fraction(generator_before, backend.G) > 0.5
    assert probe.changed_fraction(critic_before, backend.D) > 0.5
    with probe.calls_recorded(backend.G_ema) as calls:
        images = backend.sample([11], SamplerOptions(truncation_psi=0.8))
    probe.assert_on_gpu_path(calls, images=False)
    assert_images(images, 1)


def test_ddpm_celebahq_unet_trains_and_samples_at_256_under_bf16(probe):
    backend = create_backend("ddpm", "paper", {"batch_size": 2}, device="cpu")
    backend.build(0, total_steps=2)
    config = backend.config
    assert (config.block_out_channels, config.attention_levels) == ((128, 128, 256, 256, 512, 512), (4,))
    assert backend.autocast_dtype == torch.bfloat16 and backend.grad_scaler is None
    assert backend.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    with probe.calls_recorded(backend.unet) as calls:
        metrics = backend.train_step(real_batch())
    assert_finite(metrics)
    probe.assert_on_gpu_path(calls)
    # The paper's warm-up starts the learning rate at 0, so the first step moves no weight: its gradients show that
    # the backward pass reached every parameter in float32 instead.
    assert metrics["lr"] == 0.0 and metrics["grad_norm"] > 0
    gradients = [p.grad for p in backend.unet.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in gradients)
    assert sum(bool(g.abs().sum() > 0) for g in gradients) / len(gradients) > 0.9
    # One denoising step of each fast sampler through the EMA copy (the full chains are the GPU check's).
    sampling_unet = backend._sampling_unet()
    for sampler in ("ddim", "dpm_solver"):
        with probe.calls_recorded(sampling_unet) as calls:
            images = backend.sample([5], SamplerOptions(sampler=sampler, steps=1))
        probe.assert_on_gpu_path(calls)
        assert_images(images, 1)


def test_dermgan_paper_profile_trains_and_samples_at_256_under_bf16(probe):
    backend = create_backend("dermgan", "paper", {"batch_size": 2, "mixed_precision": "bf16"}, device="cpu")
    backend.build(0, total_steps=2)
    assert backend.autocast_dtype == torch.bfloat16 and backend.memory_format == torch.channels_last
    maps = torch.from_numpy(backend.condition_maps([1, 2], LESION)).permute(0, 3, 1, 2)
    before = probe.parameters_copy(backend.generator)
    with probe.calls_recorded(backend.generator) as generator_calls:
        metrics = backend.train_step(real_batch(), None, maps)
    assert_finite(metrics)
    probe.assert_on_gpu_path(generator_calls)
    assert probe.changed_fraction(before, backend.generator) > 0.5
    with probe.calls_recorded(backend.generator) as calls:
        images = backend.sample([3], conditioning=LESION)
    probe.assert_on_gpu_path(calls)
    assert_images(images, 1)
