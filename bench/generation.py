"""Generator benchmarks: DDPM-1000 vs DDIM-50 sampling images/s, StyleGAN2-ADA training seconds per
kimg and sampling images/s (tiny on CPU; the paper profile whenever a GPU is present). The device is
recorded: compare with the published StyleGAN2 256×256 figures (21.6–24.2 s/kimg on one V100,
12.5 s/kimg on one A100) only on a GPU run."""

from __future__ import annotations

import time
from typing import Any


def _sample_rate(backend, n: int, options) -> float:
    backend.sample([0], options)  # warm-up: kernel selection, caches
    started = time.perf_counter()
    backend.sample(list(range(n)), options)
    return n / (time.perf_counter() - started)


def run(quick: bool = False) -> dict[str, Any]:
    import dataclasses

    import torch

    from services.common.device import describe_device
    from services.generation.backend import SamplerOptions
    from services.generation.registry import create_backend

    gpu = torch.cuda.is_available()
    profile = "paper" if gpu else "tiny"
    n = 16 if gpu else (4 if quick else 8)
    results: dict[str, Any] = {"device": describe_device(), "profile": profile}

    ddpm = create_backend("ddpm", profile)
    ddpm.build(0)
    results["ddpm_sampling_images_per_s"] = {
        "ddpm_1000": round(_sample_rate(ddpm, n, SamplerOptions("ddpm", ddpm.config.num_train_timesteps,
                                                                 batch_size=n)), 3),
        "ddim_50": round(_sample_rate(ddpm, n, SamplerOptions("ddim", 50, batch_size=n)), 3),
    }

    stylegan = create_backend("stylegan2_ada", profile)
    steps = 4 if quick else 10
    stylegan.build(0, total_steps=steps + 2)
    batch = stylegan.batch_size
    images = torch.rand(batch, 3, stylegan.resolution, stylegan.resolution, device=stylegan.device) * 2 - 1
    stylegan.train_step(images)  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        stylegan.train_step(images)
    seconds = time.perf_counter() - started
    results["stylegan2_ada"] = {
        "train_s_per_kimg": round(seconds / (steps * batch / 1000), 2),
        "train_batch": batch,
        "sampling_images_per_s": round(_sample_rate(stylegan, n * 4, dataclasses.replace(SamplerOptions(),
                                                                                            batch_size=n * 4)), 2),
    }
    return results
