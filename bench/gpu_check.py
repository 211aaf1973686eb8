"""The one GPU check (issue 20): the paper profiles' real code paths measured side by side on one accelerator.

    python -m bench.gpu_check                    # the full plan on the GPU (an H200 is the target: < 8 min)
    python -m bench.gpu_check --dry-run          # the same code at tiny sizes on the CPU (seconds; in make test)

It measures, in one process and one run: StyleGAN2-ADA 256 px at batch 32 (s/kimg over >= 100 steps after
warm-up, peak memory, ``torch.compile`` off and on), DDPM celebahq-256 (training steps/s with the config's AMP and
EMA; sampling img/s with DDPM-1000, DDIM-50 and DPM-Solver-20), DermGAN 256 px (training s/kimg, sampling img/s),
Inception features of 5,000 256-px PNGs (the project's extractor vs ``torch_fidelity.calculate_metrics`` on the
same folders) and classifier training img/s at 224 px for the five models (the project's training loop vs a
minimal loop in the same process). Every figure comes from the project's cores (``create_backend``,
``train_classifier``, the evaluation extractor), the device chosen at run time, the precision the config says.

A node has no network and only a preinstalled torch stack: the project installs with ``pip install --no-deps .``
plus the wheels ``make gpu-wheels`` gathers (docs/gpu-check.md). Nothing here downloads: Inception gets a randomly
initialised weights file (the speed is the weights'-independent), classifiers start from random init.

Before it starts it prints its estimate per section and refuses (exit 2) when the sum exceeds ``--budget-s``;
while running it skips a section that would overrun the budget. It prints progress, rewrites the JSON after
every section, and on SIGTERM or Ctrl-C writes what it has (``complete: false``) before exiting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = "skingenbench.gpu_check/1"
DEFAULT_OUT = Path("bench/results/gpu.json")
DEFAULT_BUDGET_S = 480.0  # the 8 minutes, warm-up included
CLASSIFIERS = ("resnet18", "resnet50", "vgg16", "efficientnet_b0", "vit_base_patch16_224")

# Reference figures the results are read against (issue 20).
ANCHORS = {
    "stylegan2_s_per_kimg_a100": 12.53,  # NVIDIA's StyleGAN2-ADA, 256 px, batch 32, one A100
    "stylegan2_s_per_kimg_goal": 8.0,  # on an H200
    "ddim50_images_per_s_goal": 50.0,
    "inception_ratio_goal": 1.0,  # project img/s over torch-fidelity img/s
    "classifier_ratio_goal": 0.9,  # project img/s over the minimal loop's
    "resnet50_amp_images_per_s_a100": 2470.0,
}


@dataclass(frozen=True)
class Plan:
    """The sizes of one run. ``estimates`` are seconds per section on the plan's target (for the full plan an H200,
    from the A100 anchors and the FLOPs of each network; for the dry run two busy CPU cores)."""

    name: str
    profile: str  # every generator's and classifier's profile: "paper", or "tiny" for the dry run
    stylegan2_batch: int
    stylegan2_warmup: int
    stylegan2_steps: int
    compile_backend: str  # torch.compile backend: inductor on a GPU; eager (tracing only) in the dry run
    ddpm_batch: int
    ddpm_warmup: int
    ddpm_steps: int
    ddpm_samplers: tuple[tuple[str, int, int], ...]  # (sampler, steps, images)
    dermgan_warmup: int
    dermgan_steps: int
    dermgan_sample_images: int
    inception_images: int  # in all, split into two folders
    inception_size: int
    inception_batch: int
    # torch-fidelity's ``save_cpu_ram``: True decodes in the main process instead of its four loader processes, which
    # on a busy two-core CPU cost minutes for a handful of images (the dry run); the GPU run keeps its default.
    inception_peer_save_cpu_ram: bool
    classifier_images: int  # per training epoch
    classifier_batch: int
    classifier_epochs: int  # the last epoch is measured (the first warms the allocator and cuDNN up)
    estimates: dict[str, float]


FULL = Plan(
    name="full",
    profile="paper",
    stylegan2_batch=32,
    stylegan2_warmup=10,
    stylegan2_steps=100,
    compile_backend="inductor",
    ddpm_batch=16,
    ddpm_warmup=5,
    ddpm_steps=30,
    ddpm_samplers=(("ddpm", 1000, 16), ("ddim", 50, 64), ("dpm_solver", 20, 64)),
    dermgan_warmup=5,
    dermgan_steps=50,
    dermgan_sample_images=256,
    inception_images=5000,
    inception_size=256,
    inception_batch=64,
    inception_peer_save_cpu_ram=False,
    classifier_images=64 * 12,
    classifier_batch=64,
    classifier_epochs=2,
    estimates={
        "setup": 20.0,
        "stylegan2": 50.0,  # 110 steps x 32 images at <= 12.5 s/kimg, plus building
        "stylegan2_compiled": 120.0,  # inductor's compile of G and D, then the same steps
        "ddpm_training": 20.0,
        "ddpm_sampling": 80.0,  # dominated by the 1000-step chain
        "dermgan": 25.0,
        "inception": 70.0,  # writing 5,000 PNGs, then each side decodes and extracts them
        "classifiers": 60.0,
    },
)

DRY = Plan(
    name="dry-run",
    profile="tiny",
    stylegan2_batch=4,
    stylegan2_warmup=1,
    stylegan2_steps=2,
    compile_backend="eager",
    ddpm_batch=4,
    ddpm_warmup=1,
    ddpm_steps=2,
    ddpm_samplers=(("ddpm", 4, 2), ("ddim", 3, 2), ("dpm_solver", 3, 2)),
    dermgan_warmup=1,
    dermgan_steps=2,
    dermgan_sample_images=2,
    inception_images=8,
    inception_size=64,
    inception_batch=4,
    inception_peer_save_cpu_ram=True,
    classifier_images=4,
    classifier_batch=2,
    classifier_epochs=1,
    estimates={
        "setup": 3.0,
        "stylegan2": 3.0,
        "stylegan2_compiled": 8.0,
        "ddpm_training": 2.0,
        "ddpm_sampling": 2.0,
        "dermgan": 2.0,
        "inception": 8.0,
        "classifiers": 10.0,
    },
)


class Stopped(BaseException):
    """SIGTERM arrived: stop measuring and write what there is. A BaseException, as KeyboardInterrupt is, so that no
    ``except Exception`` on the way (the project's error mapping, a library's retry) can swallow it."""


# -- timing on the device ------------------------------------------------------------------------------------
def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: str) -> float | None:
    """Peak memory the caching allocator handed out since ``reset_peak`` (None on the CPU)."""
    import torch

    if device.startswith("cuda"):
        return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return None


def timed(device: str, work: Callable[[], object]) -> float:
    """Wall seconds of ``work`` with the device's queue drained before and after."""
    synchronize(device)
    started = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - started


def random_images(count: int, size: int, device: str, seed: int = 0):
    """Training images in [-1, 1], made once on the device (the loop's data path is not what is measured)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(count, 3, size, size, generator=generator) * 2 - 1).to(device)


# -- sections ------------------------------------------------------------------------------------------------
def stylegan2_section(plan: Plan, device: str, compiled: bool) -> dict[str, Any]:
    """StyleGAN2-ADA's training step as the generation service runs it (G main, lazy path length, D main, lazy R1,
    EMA, ADA); s/kimg = seconds per 1,000 images shown to D, as NVIDIA's logs report it."""
    import torch
    from skingenbench.services.generation.core.registry import create_backend

    backend = create_backend(
        "stylegan2_ada", plan.profile, {"batch_size": plan.stylegan2_batch}, device=device
    )
    total = plan.stylegan2_warmup + plan.stylegan2_steps
    backend.build(0, total_steps=total)
    config = backend.config
    if compiled:
        # Only forward passes compile; the regularisers' double backward goes through them as well, which is
        # what this measures (a failure is recorded, not hidden).
        backend.G = torch.compile(backend.G, backend=plan.compile_backend)
        backend.D = torch.compile(backend.D, backend=plan.compile_backend)
    real = random_images(config.batch_size, config.resolution, device)
    warmup = timed(device, lambda: [backend.train_step(real) for _ in range(plan.stylegan2_warmup)])
    reset_peak(device)
    seconds = timed(device, lambda: [backend.train_step(real) for _ in range(plan.stylegan2_steps)])
    kimg = plan.stylegan2_steps * config.batch_size / 1000
    return {
        "resolution": config.resolution,
        "batch": config.batch_size,
        "mixed_precision": config.mixed_precision,
        "autocast_dtype": str(backend.autocast_dtype),
        "torch_compile": plan.compile_backend if compiled else "off",
        "warmup_steps": plan.stylegan2_warmup,
        "warmup_s": round(warmup, 2),
        "steps": plan.stylegan2_steps,
        "s_per_kimg": round(seconds / kimg, 3),
        "peak_memory_gib": peak_gib(device),
    }


def ddpm_training_section(plan: Plan, device: str) -> dict[str, Any]:
    """DDPM's training step (noise, UNet, MSE, AdamW, clip, cosine schedule, EMA) with the config's AMP."""
    from skingenbench.services.generation.core.registry import create_backend

    backend = create_backend("ddpm", plan.profile, {"batch_size": plan.ddpm_batch}, device=device)
    backend.build(0, total_steps=plan.ddpm_warmup + plan.ddpm_steps)
    config = backend.config
    images = random_images(config.batch_size, config.resolution, device)
    timed(device, lambda: [backend.train_step(images) for _ in range(plan.ddpm_warmup)])
    reset_peak(device)
    seconds = timed(device, lambda: [backend.train_step(images) for _ in range(plan.ddpm_steps)])
    return {
        "resolution": config.resolution,
        "block_out_channels": list(config.block_out_channels),
        "batch": config.batch_size,
        "mixed_precision": config.mixed_precision,
        "autocast_dtype": str(backend.autocast_dtype),
        "grad_scaler": backend.grad_scaler is not None,
        "ema": backend.ema is not None,
        "steps": plan.ddpm_steps,
        "steps_per_s": round(plan.ddpm_steps / seconds, 3),
        "images_per_s": round(plan.ddpm_steps * config.batch_size / seconds, 2),
        "peak_memory_gib": peak_gib(device),
    }


def ddpm_sampling_section(plan: Plan, device: str) -> dict[str, Any]:
    """img/s of each sampler through ``sample`` (per-image seeded noise, EMA weights, the config's autocast)."""
    from skingenbench.services.generation.core.backend import SamplerOptions
    from skingenbench.services.generation.core.registry import create_backend

    backend = create_backend("ddpm", plan.profile, device=device)
    backend.build(0)  # sampling only: random weights sample at the same speed as trained ones
    results: dict[str, Any] = {
        "resolution": backend.config.resolution,
        "autocast_dtype": str(backend.autocast_dtype),
    }
    for sampler, steps, images in plan.ddpm_samplers:
        seeds = list(range(images))
        # Warm-up at the measured batch (cuDNN picks its kernels per shape), two steps only.
        backend.sample(seeds, SamplerOptions(sampler=sampler, steps=2, batch_size=images))
        reset_peak(device)
        options = SamplerOptions(sampler=sampler, steps=steps, batch_size=images)
        seconds = timed(device, lambda options=options, seeds=seeds: backend.sample(seeds, options))
        results[f"{sampler}_{steps}"] = {
            "images": images,
            "batch": images,
            "seconds": round(seconds, 2),
            "images_per_s": round(images / seconds, 2),
            "peak_memory_gib": peak_gib(device),
        }
    return results


LESION = {"label": "MEL", "lesion_area_fraction": 0.15, "center_x": 0.5, "center_y": 0.5, "ita_degrees": 35.0}


def dermgan_section(plan: Plan, device: str) -> dict[str, Any]:
    """DermGAN's Pix2Pix step (D then G with the lesion-weighted L1) and its map-conditioned sampling."""
    import torch
    from skingenbench.services.generation.core.registry import create_backend

    backend = create_backend("dermgan", plan.profile, device=device)
    backend.build(0, total_steps=plan.dermgan_warmup + plan.dermgan_steps)
    config = backend.config
    seeds = list(range(config.batch_size))
    maps = torch.from_numpy(backend.condition_maps(seeds, LESION)).permute(0, 3, 1, 2).to(device)
    images = random_images(config.batch_size, config.resolution, device)
    timed(device, lambda: [backend.train_step(images, None, maps) for _ in range(plan.dermgan_warmup)])
    reset_peak(device)
    seconds = timed(
        device, lambda: [backend.train_step(images, None, maps) for _ in range(plan.dermgan_steps)]
    )
    sample_seeds = list(range(plan.dermgan_sample_images))
    backend.sample(sample_seeds[: config.sample_batch_size], conditioning=LESION)  # warm-up
    sampling = timed(device, lambda: backend.sample(sample_seeds, conditioning=LESION))
    return {
        "resolution": config.resolution,
        "batch": config.batch_size,
        "mixed_precision": config.mixed_precision,
        "steps": plan.dermgan_steps,
        "s_per_kimg": round(seconds / (plan.dermgan_steps * config.batch_size / 1000), 3),
        "training_peak_memory_gib": peak_gib(device),
        "sample_images": plan.dermgan_sample_images,
        "sample_batch": config.sample_batch_size,
        "sampling_images_per_s": round(plan.dermgan_sample_images / sampling, 2),
    }


def random_inception_weights(folder: Path) -> Path:
    """torch-fidelity's InceptionV3 state dict with Kaiming-initialised weights (the published file is not here and
    nothing downloads; a default init collapses the features, Kaiming's does not; the speed is the same)."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(
            self, state_dict, strict=True, assign=False
        ):  # the empty file below: keep the init
            return None

    empty = folder / "empty.pth"
    torch.save({}, empty)
    network = Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    generator = torch.Generator().manual_seed(0)
    for module in network.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(module.weight, generator=generator)
    path = folder / "inception-random-kaiming.pth"
    torch.save(network.state_dict(), path)
    return path


def write_png_folders(root: Path, count: int, size: int) -> list[Path]:
    """Two folders of ``count / 2`` smooth random RGB PNGs each (what a real and a synthetic set look like on disk)."""
    import cv2
    import numpy as np

    folders = [root / "set_a", root / "set_b"]
    for folder in folders:
        folder.mkdir(parents=True)

    def write(index: int) -> None:
        rng = np.random.default_rng(index)
        coarse = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folders[index % 2] / f"{index:05d}.png"), image)

    with ThreadPoolExecutor(min(16, os.cpu_count() or 1)) as pool:
        list(pool.map(write, range(count)))
    return folders


class DecodedFolder:
    """A folder's PNGs decoded on access with the project's decoder (what an evaluation reads from its store)."""

    def __init__(self, folder: Path) -> None:
        self.paths = sorted(folder.glob("*.png"))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from skingenbench.services.core.imaging.decoding import decode_image

        return decode_image(self.paths[index].read_bytes())


def inception_section(plan: Plan, device: str) -> dict[str, Any]:
    """Both sides read the same two PNG folders and end at FID: the project decodes with its decoder, extracts with
    its extractor (torch-fidelity's InceptionV3 inside) and computes the FID statistics; the peer is
    ``torch_fidelity.calculate_metrics(fid=True)`` with the same weights and batch, its cache off."""
    import torch_fidelity
    from skingenbench.services.evaluation.core.extractors import FEATURE_EXTRACTORS
    from skingenbench.services.evaluation.core.metrics import fid_statistics

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        weights = random_inception_weights(root)
        started = time.perf_counter()
        folders = write_png_folders(root / "images", plan.inception_images, plan.inception_size)
        writing = time.perf_counter() - started
        extractor = FEATURE_EXTRACTORS.create(
            "inception-v3-compat",
            "paper",
            {"batch_size": plan.inception_batch},
            weights=weights,
            device=device,
        )
        warm = DecodedFolder(folders[0])
        extractor.extract([warm[i] for i in range(min(plan.inception_batch, len(warm)))])

        def project() -> None:
            for folder in folders:
                fid_statistics(extractor.extract(DecodedFolder(folder))["2048"])

        def peer() -> None:
            torch_fidelity.calculate_metrics(
                input1=str(folders[0]),
                input2=str(folders[1]),
                fid=True,
                cuda=device.startswith("cuda"),
                batch_size=plan.inception_batch,
                feature_extractor_weights_path=str(weights),
                cache=False,
                save_cpu_ram=plan.inception_peer_save_cpu_ram,
                verbose=False,
            )

        peer_seconds = timed(device, peer)
        project_seconds = timed(device, project)
    images = plan.inception_images
    return {
        "images": images,
        "input": f"{plan.inception_size}x{plan.inception_size} PNG",
        "batch": plan.inception_batch,
        "torch_fidelity_save_cpu_ram": plan.inception_peer_save_cpu_ram,
        "weights": "random Kaiming init (same file for both sides)",
        "png_writing_s": round(writing, 2),
        "project_images_per_s": round(images / project_seconds, 2),
        "torch_fidelity_images_per_s": round(images / peer_seconds, 2),
        "ratio": round(peer_seconds / project_seconds, 3),
    }


def minimal_loop_images_per_s(model, config, images: int, batch: int, device: str) -> float:
    """The peer: what a user writes around the same network — SGD with the same settings, bf16 autocast and
    channels_last on the accelerator, cross-entropy, on crops made once and kept on the device; the last of two
    passes is timed. ``images`` per pass, ``batch`` per step."""
    import torch
    import torch.nn.functional as F
    from skingenbench.services.core.device import mixed_precision_path

    accelerated = mixed_precision_path(device)
    memory_format = torch.channels_last if accelerated and config.channels_last else torch.contiguous_format
    model = model.to(device).to(memory_format=memory_format).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(0)
    size = config.image_size
    data = (
        torch.randn(batch, 3, size, size, generator=generator)
        .to(device)
        .contiguous(memory_format=memory_format)
    )
    labels = torch.randint(0, 5, (batch,), generator=generator).to(device)
    steps = max(1, images // batch)

    def one_pass() -> None:
        for _ in range(steps):
            with torch.autocast(
                device.split(":")[0], dtype=torch.bfloat16, enabled=accelerated and config.amp
            ):
                logits = model(data)
            loss = F.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    timed(device, one_pass)
    return steps * batch / timed(device, one_pass)


def classifiers_section(plan: Plan, device: str) -> dict[str, Any]:
    """Training img/s of each model: the project's ``train_classifier`` (its loader threads decoding crops from
    uint8 images, RandomResizedCrop + flip, AMP and channels_last per the config, the last epoch) vs the minimal
    loop on the same architecture and settings."""
    import numpy as np
    from skingenbench.services.classification.core.training import train_classifier
    from skingenbench.services.core.classifiers.models import create_classifier

    overrides = {"pretrained": "none", "epochs": plan.classifier_epochs, "batch_size": plan.classifier_batch}
    results: dict[str, Any] = {}
    for name in CLASSIFIERS:
        model, _, config = create_classifier(name, plan.profile, overrides)
        rng = np.random.default_rng(0)
        side = config.resize_size
        data = [
            (rng.integers(0, 256, (side, side, 3), dtype=np.uint8), i % 5)
            for i in range(plan.classifier_images)
        ]
        outcome = train_classifier(model, config, data, data[: config.batch_size], seed=0, device=device)
        project = float(outcome.history[-1]["images_per_s"])
        peer_model, _, _ = create_classifier(name, plan.profile, overrides)
        peer = minimal_loop_images_per_s(
            peer_model, config, plan.classifier_images, config.batch_size, device
        )
        results[name] = {
            "image_size": config.image_size,
            "batch": config.batch_size,
            "amp": config.amp,
            "channels_last": config.channels_last,
            "loader_threads": config.loader_threads,
            "project_images_per_s": round(project, 2),
            "minimal_loop_images_per_s": round(peer, 2),
            "ratio": round(project / peer, 3),
        }
        del model, peer_model
    return results


SECTIONS: dict[str, Callable[[Plan, str], dict[str, Any]]] = {
    "stylegan2": lambda plan, device: stylegan2_section(plan, device, compiled=False),
    "stylegan2_compiled": lambda plan, device: stylegan2_section(plan, device, compiled=True),
    "ddpm_training": ddpm_training_section,
    "ddpm_sampling": ddpm_sampling_section,
    "dermgan": dermgan_section,
    "inception": inception_section,
    "classifiers": classifiers_section,
}


# -- the run -------------------------------------------------------------------------------------------------
def goals(sections: dict[str, Any]) -> dict[str, Any]:
    """Each goal of the issue with the measured value and whether it is met (None: not measured)."""

    def value(section: str, *keys: str) -> float | None:
        entry: Any = sections.get(section, {})
        for key in keys:
            entry = entry.get(key) if isinstance(entry, dict) else None
        return entry if isinstance(entry, (int, float)) else None

    checks = {
        "stylegan2_s_per_kimg": (
            value("stylegan2", "s_per_kimg"),
            ANCHORS["stylegan2_s_per_kimg_goal"],
            "<=",
        ),
        "ddim50_images_per_s": (
            value("ddpm_sampling", "ddim_50", "images_per_s"),
            ANCHORS["ddim50_images_per_s_goal"],
            ">=",
        ),
        "inception_ratio": (value("inception", "ratio"), ANCHORS["inception_ratio_goal"], ">="),
    }
    for name in CLASSIFIERS:
        checks[f"classifier_ratio_{name}"] = (
            value("classifiers", name, "ratio"),
            ANCHORS["classifier_ratio_goal"],
            ">=",
        )
    out = {}
    for name, (measured, goal, sense) in checks.items():
        met = None if measured is None else (measured <= goal if sense == "<=" else measured >= goal)
        out[name] = {"measured": measured, "goal": f"{sense} {goal}", "met": met}
    return out


class Run:
    """The results document, rewritten (atomically) after every section and on a stop."""

    def __init__(self, out: Path, plan: Plan, device: str, budget_s: float) -> None:
        self.out, self.plan, self.device, self.budget_s = out, plan, device, budget_s
        self.started = time.perf_counter()
        self.document: dict[str, Any] = {
            "schema": SCHEMA,
            "plan": plan.name,
            "dry_run": plan is DRY,
            "complete": False,
            "stopped": None,
            "environment": environment(device),
            "budget_s": budget_s,
            "estimate_s": dict(plan.estimates),
            "estimate_total_s": round(sum(plan.estimates.values()), 1),
            "anchors": dict(ANCHORS),
            "sections": {},
        }

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def write(self) -> None:
        self.document["elapsed_s"] = round(self.elapsed(), 1)
        self.document["goals"] = goals(self.document["sections"])
        self.out.parent.mkdir(parents=True, exist_ok=True)
        partial = self.out.with_name(self.out.name + ".tmp")
        partial.write_text(json.dumps(self.document, indent=2, sort_keys=True) + "\n")
        partial.replace(self.out)


def environment(device: str) -> dict[str, Any]:
    import torch
    from skingenbench.services.core.device import describe_device

    info: dict[str, Any] = {
        "device": describe_device() if not device.startswith("cpu") else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    for package in ("diffusers", "timm", "torch_fidelity", "torchvision"):
        try:
            info[package] = __import__(package).__version__
        except ImportError:
            info[package] = None
    return info


def log(run: Run, message: str) -> None:
    print(f"[gpu-check {run.elapsed():6.1f}s] {message}", flush=True)


def execute(run: Run, names: list[str]) -> None:
    plan, sections = run.plan, run.document["sections"]
    for index, name in enumerate(names):
        left = run.budget_s - run.elapsed()
        estimate = plan.estimates[name]
        if estimate > left:
            sections[name] = {"status": "skipped", "reason": f"estimate {estimate:.0f} s > {left:.0f} s left"}
            log(run, f"{name}: skipped ({sections[name]['reason']})")
            run.write()
            continue
        log(run, f"[{index + 1}/{len(names)}] {name} (estimate {estimate:.0f} s) ...")
        started = time.perf_counter()
        try:
            result = {"status": "ok", **SECTIONS[name](plan, run.device)}
        except (Stopped, KeyboardInterrupt):
            sections[name] = {"status": "stopped", "seconds": round(time.perf_counter() - started, 1)}
            raise
        except Exception as error:  # noqa: BLE001 - a failing section is a result; the others still run
            result = {"status": "error", "error": f"{type(error).__name__}: {str(error)[:800]}"}
        result["seconds"] = round(time.perf_counter() - started, 1)
        sections[name] = result
        log(run, f"{name}: {json.dumps(result, sort_keys=True)}")
        run.write()
        release_memory(run.device)


def release_memory(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny sizes on the CPU: exercises every section"
    )
    parser.add_argument("--out", type=Path, default=None, help=f"results JSON (default {DEFAULT_OUT})")
    parser.add_argument(
        "--budget-s", type=float, default=DEFAULT_BUDGET_S, help="refuse a plan estimated above it"
    )
    parser.add_argument("--device", default="", help="default: SKINGENBENCH_DEVICE, else cuda when present")
    parser.add_argument(
        "--sections", default="", help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing downloads
    plan = DRY if args.dry_run else FULL
    names = [n for n in args.sections.split(",") if n] or list(SECTIONS)
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        print(f"gpu-check: unknown sections {unknown}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    from skingenbench.services.core.device import CPU_AUTOCAST_ENV, select_device

    if args.dry_run:
        # The CPU takes the GPU's code path (bf16 autocast, channels_last) so that the dry run runs what CUDA runs.
        os.environ[CPU_AUTOCAST_ENV] = "1"
    import torch

    device = "cpu" if args.dry_run else select_device(args.device)
    if args.dry_run:
        # Tiny kernels: OpenMP threads spinning against other processes make them many times slower on a shared
        # CPU (the generation tests' one-thread rule, tests/generation/conftest.py).
        torch.set_num_threads(1)
    if not args.dry_run and not device.startswith("cuda"):
        print(
            "gpu-check: no CUDA device; the full plan is for a GPU (use --dry-run on a CPU)", file=sys.stderr
        )
        return 2
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed shapes throughout: let cuDNN pick its kernels
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    out = args.out or DEFAULT_OUT
    run = Run(out, plan, device, args.budget_s)
    estimate = plan.estimates["setup"] + sum(plan.estimates[n] for n in names)
    run.document["estimate_total_s"] = round(estimate, 1)
    log(
        run,
        f"plan {plan.name} on {run.document['environment']['device']}; estimates (s): "
        + ", ".join(f"{n} {plan.estimates[n]:.0f}" for n in ["setup", *names])
        + f"; total {estimate:.0f}",
    )
    if estimate > args.budget_s:
        run.document["stopped"] = (
            f"refused: estimate {estimate:.0f} s exceeds the budget {args.budget_s:.0f} s"
        )
        run.write()
        print(f"gpu-check: {run.document['stopped']} (give --budget-s or --sections)", file=sys.stderr)
        return 2

    def stop(signum, _frame):
        raise Stopped(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        execute(run, names)
        run.document["complete"] = True
    except (Stopped, KeyboardInterrupt) as reason:
        run.document["stopped"] = str(reason) or "KeyboardInterrupt"
        log(run, f"stopped ({run.document['stopped']}): writing the partial results")
    finally:
        signal.signal(signal.SIGTERM, previous)
        run.write()
    log(run, f"wrote {out}")
    return 0 if run.document["complete"] else 1


if __name__ == "__main__":
    # Run as a script (as ``make gpu-check`` does), Python puts bench/ first on sys.path, where bench's own modules
    # (evaluation.py, generation.py, ...) would shadow installed modules of the same names: take it off.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)
    sys.exit(main())
