"""Generator benchmarks: DDPM-1000 vs DDIM-50 sampling images/s, StyleGAN2-ADA and DermGAN training seconds
per kimg and sampling images/s, and the controllability measurement's images/s (tiny on CPU; the paper
profile whenever a GPU is present). The device is
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
    from skingenbench.services.core.device import describe_device
    from skingenbench.services.generation.core.backend import SamplerOptions
    from skingenbench.services.generation.core.registry import create_backend

    gpu = torch.cuda.is_available()
    profile = "paper" if gpu else "tiny"
    n = 16 if gpu else (4 if quick else 8)
    results: dict[str, Any] = {"device": describe_device(), "profile": profile}

    ddpm = create_backend("ddpm", profile)
    ddpm.build(0)
    results["ddpm_sampling_images_per_s"] = {
        "ddpm_1000": round(
            _sample_rate(ddpm, n, SamplerOptions("ddpm", ddpm.config.num_train_timesteps, batch_size=n)), 3
        ),
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
        "sampling_images_per_s": round(
            _sample_rate(stylegan, n * 4, dataclasses.replace(SamplerOptions(), batch_size=n * 4)), 2
        ),
    }
    results["dermgan"] = _dermgan(profile, n, steps)
    return results


def _dermgan(profile: str, n: int, steps: int) -> dict[str, Any]:
    """Training on maps drawn from parameters (the images are the maps painted flat: the cost of a step does not
    depend on what the images show), sampling from explicit parameters, and measuring generated images."""
    import numpy as np
    import torch
    from skingenbench.services.core.classes import CLASSES
    from skingenbench.services.generation.core.dermgan import controllability
    from skingenbench.services.generation.core.dermgan.semantic_map import (
        MapParams,
        map_from_params,
        paint_map,
    )
    from skingenbench.services.generation.core.registry import create_backend

    backend = create_backend("dermgan", profile)
    backend.build(0, total_steps=steps + 2)
    rng = np.random.default_rng(0)
    params = [
        MapParams(
            CLASSES[i % len(CLASSES)], float(rng.uniform(0.05, 0.3)), 0.5, 0.5, float(rng.uniform(-40, 60))
        )
        for i in range(backend.batch_size)
    ]
    maps = np.stack([map_from_params(p, backend.resolution, backend.layout) for p in params])
    images = np.stack([paint_map(m, backend.layout) for m in maps])
    images = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(backend.device)
    conditions = torch.from_numpy(maps).permute(0, 3, 1, 2)
    backend.train_step(images, None, conditions)  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        backend.train_step(images, None, conditions)
    seconds = time.perf_counter() - started
    requests = controllability.grid(["MEL"], controllability.DEFAULT_AREAS, controllability.DEFAULT_ITAS)
    render = controllability.backend_renderer(backend)
    render([0], requests[:1])  # warm-up
    started = time.perf_counter()
    generated = render(list(range(len(requests))), requests)
    sampling = len(requests) / (time.perf_counter() - started)
    started = time.perf_counter()
    for image in generated:
        controllability.measure_image(image)
    measuring = len(generated) / (time.perf_counter() - started)
    return {
        "train_s_per_kimg": round(seconds / (steps * backend.batch_size / 1000), 2),
        "train_batch": backend.batch_size,
        "resolution": backend.resolution,
        "sampling_images_per_s": round(sampling, 2),
        "controllability_measure_images_per_s": round(measuring, 1),
    }
