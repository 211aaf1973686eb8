"""Generator benchmarks (issue 20, item 3).

- **DDPM against a plain diffusers loop** (goal: ratio >= 0.95): training steps per CPU second through the
  backend against diffusers' ``train_unconditional`` loop on the same UNet config (noise, timesteps,
  ``add_noise``, MSE, backward, clip 1.0, AdamW, warm-up schedule, EMA), and DDIM-50 images per CPU second
  through the backend against ``DDIMScheduler`` + ``UNet2DModel`` as ``DDIMPipeline`` runs them.
- **Generate over a real gRPC channel against the backend in-process** (goal >= 0.9): one inline Generate call
  (DDIM-50, 16 images) to a generation server against loading the same model from the store, sampling the same
  seeds and PNG-encoding in one process; CPU seconds of each.

Each side in a fresh process, alternately, median of 5 pairs. Beside them, as before: DDPM-1000 vs DDIM-50
sampling images/s, StyleGAN2-ADA and DermGAN training seconds per kimg and sampling images/s, and the
controllability measurement's images/s (tiny on CPU; the paper profile whenever a GPU is present). The device
is recorded: compare with the published StyleGAN2 256×256 figures (21.6–24.2 s/kimg on one V100, 12.5 s/kimg
on one A100) only on a GPU run.

Sizes (tiny profile on CPU; about 4 minutes on 2 quiet cores):

- full: DDPM 8 training steps of batch 8 and DDIM-50 of 4 images per child; Generate 16 images; sampling
  rates over 8 images; GAN training over 10 steps.
- quick: DDPM 3 steps and 2 images per child; Generate 16 images; sampling over 4 images; GANs 4 steps.
"""

from __future__ import annotations

import json
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
    # The ratios first (each printed when done, so a stopped run still shows them), then the single rates.
    results["ddpm_against_diffusers"] = ddpm_against_diffusers(
        profile, 5, 3 if quick else 8, 8, 2 if quick else 4
    )
    print(json.dumps({"ddpm_against_diffusers": results["ddpm_against_diffusers"]}), flush=True)
    results["generate_over_grpc"] = generate_against_in_process(16, 5)
    print(json.dumps({"generate_over_grpc": results["generate_over_grpc"]}), flush=True)

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


# -- DDPM against a plain diffusers loop (issue 20, item 3) -------------------------------------------------------
def _ddpm_parts(profile: str):
    from skingenbench.services.generation.core.registry import create_backend

    return create_backend("ddpm", profile).config


def ddpm_train_project(profile: str, steps: int, batch: int) -> float:
    """Fresh-process child: DDPM training steps per CPU second through the backend."""
    import torch
    from skingenbench.services.generation.core.registry import create_backend

    backend = create_backend("ddpm", profile)
    backend.build(0, total_steps=steps + 1)
    size = backend.resolution
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    backend.train_step(images)  # warm-up
    started = time.process_time()
    for _ in range(steps):
        backend.train_step(images)
    return steps / (time.process_time() - started)


def ddpm_train_peer(profile: str, steps: int, batch: int) -> float:
    """Fresh-process child: the training loop of diffusers' ``train_unconditional`` example on the same UNet
    config: noise, timesteps, add_noise, MSE, backward, clip 1.0, AdamW, warm-up schedule, EMA."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    config = _ddpm_parts(profile)
    unet = UNet2DModel(**config.unet_kwargs()).train()
    scheduler = DDPMScheduler(**config.scheduler_kwargs())
    optimizer = torch.optim.AdamW(
        unet.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, config.lr_warmup_steps, steps + 1)
    ema = (
        EMAModel(unet.parameters(), decay=float(config.ema_max_decay), use_ema_warmup=True)
        if config.use_ema
        else None
    )
    size = config.resolution
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def step() -> None:
        noise = torch.randn(images.shape)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,))
        loss = F.mse_loss(unet(scheduler.add_noise(images, noise, timesteps), timesteps).sample, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        if ema is not None:
            ema.step(unet.parameters())

    step()  # warm-up
    started = time.process_time()
    for _ in range(steps):
        step()
    return steps / (time.process_time() - started)


def ddim_project(profile: str, images: int) -> float:
    """Fresh-process child: DDIM-50 images per CPU second through the backend (one batch)."""
    from skingenbench.services.generation.core.backend import SamplerOptions
    from skingenbench.services.generation.core.registry import create_backend

    backend = create_backend("ddpm", profile)
    backend.build(0)
    backend.sample([0], SamplerOptions("ddim", 50, batch_size=1))  # warm-up
    started = time.process_time()
    backend.sample(list(range(images)), SamplerOptions("ddim", 50, batch_size=images))
    return images / (time.process_time() - started)


def ddim_peer(profile: str, images: int) -> float:
    """Fresh-process child: DDIM-50 with diffusers' scheduler and the same UNet config, as ``DDIMPipeline`` does."""
    import torch
    from diffusers import DDIMScheduler, UNet2DModel

    config = _ddpm_parts(profile)
    unet = UNet2DModel(**config.unet_kwargs()).eval()
    scheduler = DDIMScheduler(**config.scheduler_kwargs())
    size = config.resolution

    @torch.inference_mode()
    def sample(count: int) -> None:
        scheduler.set_timesteps(50)
        x = torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(0))
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t).sample, t, x, eta=0.0).prev_sample
        ((x / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    sample(1)  # warm-up
    started = time.process_time()
    sample(images)
    return images / (time.process_time() - started)


def ddpm_against_diffusers(profile: str, pairs: int, steps: int, batch: int, images: int) -> dict[str, Any]:
    from bench.fresh import alternating_pairs, measure_in_fresh_process

    def child(target: str, **kwargs: Any) -> float:
        return measure_in_fresh_process(f"bench.generation:{target}", profile=profile, **kwargs)["result"]

    train = alternating_pairs(
        lambda: child("ddpm_train_project", steps=steps, batch=batch),
        lambda: child("ddpm_train_peer", steps=steps, batch=batch),
        pairs,
    )
    ddim = alternating_pairs(
        lambda: child("ddim_project", images=images), lambda: child("ddim_peer", images=images), pairs
    )
    return {
        "profile": profile,
        "peer": "plain diffusers: UNet2DModel + DDPMScheduler/DDIMScheduler loops (train_unconditional, DDIMPipeline)",
        "train_steps_per_cpu_s": {"batch": batch, "steps": steps, **train},
        "ddim_50_images_per_cpu_s": {"images": images, **ddim},
        "goal": 0.95,
    }


# -- Generate over a real gRPC channel against the backend in-process (issue 20, item 3) -------------------------
GENERATE_SAMPLER = {"sampler": "ddim", "steps": 50}


def prepare_generator(folder: str, images: int, train_steps: int) -> dict[str, Any]:
    """Fresh-process child: a tiny DDPM trained through the generation service (StartTraining over a real
    channel) on ``images`` phantom training melanomas in a folder store; the trained model's record URI."""
    import numpy as np
    from skingenbench.services.core.imaging.decoding import encode_png
    from skingenbench.services.core.manifest import Item, Manifest, Provenance
    from skingenbench.services.data.core.phantom import PhantomConfig, render_phantom
    from skingenbench.services.generation.client import GenerationClient
    from skingenbench.services.platform.manifest_io import write_manifest
    from skingenbench.services.platform.settings import ServiceSettings
    from skingenbench.services.platform.store import LocalFolderStore
    from skingenbench.services.stages import start_service

    from skingenbench.api.v1 import common_pb2

    store, rng = LocalFolderStore(folder), np.random.default_rng(0)
    items = []
    for index in range(images):
        image = render_phantom("MEL", rng, PhantomConfig(width=32, height=32)).image
        stored = store.put_bytes(f"train/{index:05d}.png", encode_png(image), "image/png")
        items.append(Item(stored.key, stored.sha256, "MEL", f"lesion{index}", split="train"))
    ref = write_manifest(store, "manifests/train.json", Manifest(items, Provenance("bench")))
    service = start_service("generation", ServiceSettings(stage="generation", port=0), store)
    try:
        with GenerationClient(service.target, timeout_s=60) as client:
            final = client.train(
                common_pb2.ManifestRef(uri=store.uri("manifests/train.json"), sha256=ref.sha256),
                profile="tiny",
                config={"train_steps": train_steps, "checkpoint_every_steps": train_steps},
                seed=0,
            )
    finally:
        service.stop(grace_s=5.0)
    return {"model": {o.name: o.uri for o in final.outputs}["model"]}


def generate_over_grpc(folder: str, model: str, count: int) -> float:
    """Fresh-process child: CPU seconds of one inline Generate call for ``count`` images over a real channel to
    a generation server started in this process (its first call: the model is loaded from the store). The
    server's threads are this process's, so ``process_time`` holds client, channel and server alike; CPU time
    rather than wall time because on a shared machine wall time is mostly the other tenants'."""
    from skingenbench.services.platform.client import open_channel
    from skingenbench.services.platform.settings import ServiceSettings
    from skingenbench.services.platform.store import LocalFolderStore
    from skingenbench.services.stages import start_service

    from skingenbench.api.v1 import generation_pb2, generation_pb2_grpc

    service = start_service(
        "generation", ServiceSettings(stage="generation", port=0), LocalFolderStore(folder)
    )
    try:
        with open_channel(service.target) as channel:
            stub = generation_pb2_grpc.GenerationStub(channel)
            request = generation_pb2.GenerateRequest(
                model=model, count=count, seed=0, sampler=generation_pb2.SamplerOptions(**GENERATE_SAMPLER)
            )
            started = time.process_time()
            reply = stub.Generate(request, timeout=600)
            seconds = time.process_time() - started
    finally:
        service.stop(grace_s=5.0)
    if len(reply.images) != count:
        raise RuntimeError(f"asked for {count} images, Generate returned {len(reply.images)}")
    return seconds


def generate_in_process(folder: str, model: str, count: int) -> float:
    """Fresh-process child: CPU seconds of the same work without the service: read the record, load the
    backend from its checkpoint, sample the same seeds with the same sampler, encode PNGs."""
    from skingenbench.services.generation import models
    from skingenbench.services.generation.core.backend import SamplerOptions
    from skingenbench.services.generation.core.sampling import image_seeds, to_png_bytes
    from skingenbench.services.platform.store import LocalFolderStore

    store = LocalFolderStore(folder)
    started = time.process_time()
    record = models.read_record(store, model)
    backend = models.load_sampling_backend(store, record)
    options = SamplerOptions(
        GENERATE_SAMPLER["sampler"], GENERATE_SAMPLER["steps"], batch_size=backend.sample_batch_size
    )
    seeds = image_seeds(count, 0)
    pngs = []
    for start in range(0, count, options.batch_size):
        pngs += [
            to_png_bytes(image)
            for image in backend.sample(seeds[start : start + options.batch_size], options)
        ]
    seconds = time.process_time() - started
    if len(pngs) != count:
        raise RuntimeError(f"asked for {count} images, sampled {len(pngs)}")
    return seconds


def generate_against_in_process(count: int, pairs: int) -> dict[str, Any]:
    import tempfile

    from bench.fresh import alternating_pairs, measure_in_fresh_process

    with tempfile.TemporaryDirectory() as folder:
        model = measure_in_fresh_process(
            "bench.generation:prepare_generator", folder=folder, images=16, train_steps=4
        )["result"]["model"]

        def rate(target: str) -> float:  # Generate calls per second
            return 1.0 / measure_in_fresh_process(target, folder=folder, model=model, count=count)["result"]

        summary = alternating_pairs(
            lambda: rate("bench.generation:generate_over_grpc"),
            lambda: rate("bench.generation:generate_in_process"),
            pairs,
        )
    return {
        "unit": "calls per CPU second (one call: load the model, sample, PNG-encode); ratio = service / in-process",
        "images": count,
        "model": "ddpm tiny (32x32), trained 4 steps through the service",
        "sampler": GENERATE_SAMPLER,
        "peer": "models.load_sampling_backend + backend.sample + to_png_bytes in one process",
        "grpc_over_in_process": summary,
        "goal": 0.9,
    }
