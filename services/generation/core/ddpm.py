"""DDPM backend: an unconditional pixel-space diffusion model on diffusers' ``UNet2DModel``.

Training is the simplified objective of Ho et al. 2020 ("Denoising Diffusion Probabilistic Models"):
pick t uniformly, noise a clean image to x_t, regress the added noise (epsilon) with MSE. Sampling runs
either the full ancestral DDPM chain (``ddpm``, what the reference study used: 1000 steps) or DDIM
(Song et al. 2021, "Denoising Diffusion Implicit Models"), which reuses the same trained network with far
fewer steps; ``eta`` = 0 is deterministic, 1 adds DDPM-like noise.

The recipe follows diffusers' ``train_unconditional`` example, which the reference study ran: AdamW
(betas 0.95/0.999, weight decay 1e-6), linear warm-up then a half-cosine decay of the learning rate
(the cosine idea after Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models"),
gradient clipping at norm 1, and an EMA of the weights with the inverse-gamma warm-up
(decay_t = 1 - (1 + t / inv_gamma) ** -power, capped at ``ema_max_decay``), which sampling uses.

EMA is diffusers' ``EMAModel``: its ``state_dict`` is scalars plus a list of tensors, so it round-trips
through the pickle-free nested-state checkpoint unchanged. Training noise and timesteps come from one
``torch.Generator`` on the training device whose state is in the checkpoint, so a resumed run draws the
same noise as an uninterrupted one. Sampling noise comes from one CPU generator per image, seeded with
that image's seed, so an image does not depend on its batch or on the device's RNG.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.optimization import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.generation.core.backend import (
    GeneratorBackend,
    SamplerOptions,
    as_json,
    check_seeds,
    cpu_snapshot,
    derived_seed,
    images_to_uint8,
    steps_for_epochs,
)

SAMPLERS = ("ddpm", "ddim")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction")
LR_SCHEDULES = ("cosine", "constant")
MIXED_PRECISION = ("no", "fp16", "bf16")
STATE_FORMAT = "skingenbench.ddpm/1"


def _invalid(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {message}", field=field)


def _check_int(config: Any, field: str, minimum: int) -> None:
    value = getattr(config, field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(field, f"must be an integer, got {value!r}")
    if value < minimum:
        raise _invalid(field, f"must be >= {minimum}, got {value}")


def _check_float(config: Any, field: str, low: float, high: float, *, low_open: bool = False,
                 high_open: bool = False) -> None:
    value = getattr(config, field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _invalid(field, f"must be a finite number, got {value!r}")
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if below or above:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise _invalid(field, f"must be in {interval}, got {value}")


def _check_choice(config: Any, field: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, field)
    if value not in choices:
        raise _invalid(field, f"must be one of {', '.join(choices)}; got {value!r}")


def _check_bool(config: Any, field: str) -> None:
    if not isinstance(getattr(config, field), bool):
        raise _invalid(field, f"must be true or false, got {getattr(config, field)!r}")


@dataclass(frozen=True)
class DDPMConfig:
    """Everything that defines a DDPM run. Class defaults are the reference study's training recipe."""

    # Images: square, side ``resolution``; must halve cleanly at every down-sampling level.
    resolution: int = 256

    # UNet2DModel. One level per entry of ``block_out_channels``; levels are numbered from the full
    # resolution (0) down. ``attention_levels`` puts self-attention in that level's down block and in
    # the mirrored up block (the mid block always has attention, as in diffusers).
    block_out_channels: tuple[int, ...] = (128, 128, 256, 256, 512, 512)
    layers_per_block: int = 2
    attention_levels: tuple[int, ...] = (4,)
    attention_head_dim: int | None = None  # None: one head as wide as the block
    norm_num_groups: int = 32
    norm_eps: float = 1e-6
    downsample_padding: int = 0
    flip_sin_to_cos: bool = False
    freq_shift: int = 1

    # Forward (noising) process, shared by the training scheduler and both samplers.
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_type: str = "epsilon"
    clip_sample: bool = True  # clip the predicted x_0 to [-1, 1] while sampling

    # Optimisation. Give either ``train_steps`` or ``train_epochs`` (the other 0); epochs become
    # steps with backend.steps_for_epochs: ceil(epochs * dataset_size / batch_size).
    batch_size: int = 16
    learning_rate: float = 1e-5
    lr_schedule: str = "cosine"
    lr_warmup_steps: int = 500
    train_steps: int = 0
    train_epochs: int = 120
    adam_beta1: float = 0.95
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    weight_decay: float = 1e-6
    grad_clip_norm: float = 1.0  # 0 disables clipping (the norm is still reported)
    use_ema: bool = True
    ema_max_decay: float = 0.9999
    ema_inv_gamma: float = 1.0
    ema_power: float = 0.75
    hflip_probability: float = 0.5
    mixed_precision: str = "fp16"  # autocast on CUDA only; the CPU always trains in fp32
    checkpoint_every_steps: int = 1000

    # Sampling defaults. ``ddpm`` always defaults to the full chain of num_train_timesteps steps.
    default_sampler: str = "ddim"
    default_ddim_steps: int = 50
    sample_batch_size: int = 16

    def __post_init__(self) -> None:
        # Configs arrive as JSON, where tuples are lists; store tuples so configs compare and hash.
        for name in ("block_out_channels", "attention_levels"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    @property
    def levels(self) -> int:
        return len(self.block_out_channels)

    def validate(self) -> None:
        _check_int(self, "resolution", 1)
        if not isinstance(self.block_out_channels, tuple) or not self.block_out_channels:
            raise _invalid("block_out_channels", "must be a non-empty list of channel counts")
        _check_int(self, "norm_num_groups", 1)
        for channels in self.block_out_channels:
            if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
                raise _invalid("block_out_channels", f"channel counts must be positive integers, got {channels!r}")
            if channels % self.norm_num_groups:
                raise _invalid("block_out_channels",
                               f"{channels} channels do not split into norm_num_groups={self.norm_num_groups}")
        factor = 2 ** (self.levels - 1)
        if self.resolution % factor:
            raise _invalid("resolution", f"{self.resolution} is not divisible by 2**(levels-1) = {factor} "
                                         f"for {self.levels} levels")
        _check_int(self, "layers_per_block", 1)
        if not isinstance(self.attention_levels, tuple) or len(set(self.attention_levels)) != len(
                self.attention_levels) or any(
                isinstance(lv, bool) or not isinstance(lv, int) or not 0 <= lv < self.levels
                for lv in self.attention_levels):
            raise _invalid("attention_levels", f"must be distinct level indices in [0, {self.levels}), "
                                               f"got {self.attention_levels!r}")
        if self.attention_head_dim is not None:
            _check_int(self, "attention_head_dim", 1)
            for level in (*self.attention_levels, self.levels - 1):
                if self.block_out_channels[level] % self.attention_head_dim:
                    raise _invalid("attention_head_dim", f"{self.attention_head_dim} does not divide the "
                                                         f"{self.block_out_channels[level]} channels of level {level}")
        _check_float(self, "norm_eps", 0.0, 1.0, low_open=True)
        _check_int(self, "downsample_padding", 0)
        _check_bool(self, "flip_sin_to_cos")
        _check_int(self, "freq_shift", 0)
        _check_int(self, "num_train_timesteps", 2)
        _check_choice(self, "beta_schedule", BETA_SCHEDULES)
        _check_float(self, "beta_start", 0.0, 1.0, low_open=True, high_open=True)
        _check_float(self, "beta_end", 0.0, 1.0, low_open=True, high_open=True)
        if self.beta_schedule != "squaredcos_cap_v2" and self.beta_start >= self.beta_end:
            raise _invalid("beta_end", f"must exceed beta_start ({self.beta_start}), got {self.beta_end}")
        _check_choice(self, "prediction_type", PREDICTION_TYPES)
        _check_bool(self, "clip_sample")
        _check_int(self, "batch_size", 1)
        _check_float(self, "learning_rate", 0.0, 1.0, low_open=True)
        _check_choice(self, "lr_schedule", LR_SCHEDULES)
        _check_int(self, "lr_warmup_steps", 0)
        _check_int(self, "train_steps", 0)
        _check_int(self, "train_epochs", 0)
        if (self.train_steps > 0) == (self.train_epochs > 0):
            raise _invalid("train_steps", "give exactly one of train_steps and train_epochs (the other 0); got "
                                          f"train_steps={self.train_steps}, train_epochs={self.train_epochs}")
        _check_float(self, "adam_beta1", 0.0, 1.0, high_open=True)
        _check_float(self, "adam_beta2", 0.0, 1.0, high_open=True)
        _check_float(self, "adam_epsilon", 0.0, 1.0, low_open=True)
        _check_float(self, "weight_decay", 0.0, 1.0)
        _check_float(self, "grad_clip_norm", 0.0, math.inf, high_open=True)
        _check_bool(self, "use_ema")
        _check_float(self, "ema_max_decay", 0.0, 1.0)
        _check_float(self, "ema_inv_gamma", 0.0, math.inf, low_open=True, high_open=True)
        _check_float(self, "ema_power", 0.0, math.inf, low_open=True, high_open=True)
        _check_float(self, "hflip_probability", 0.0, 1.0)
        _check_choice(self, "mixed_precision", MIXED_PRECISION)
        _check_int(self, "checkpoint_every_steps", 0)
        _check_choice(self, "default_sampler", SAMPLERS)
        _check_int(self, "default_ddim_steps", 1)
        if self.default_ddim_steps > self.num_train_timesteps:
            raise _invalid("default_ddim_steps", f"{self.default_ddim_steps} exceeds num_train_timesteps "
                                                 f"({self.num_train_timesteps})")
        _check_int(self, "sample_batch_size", 1)

    def down_block_types(self) -> tuple[str, ...]:
        return tuple("AttnDownBlock2D" if level in self.attention_levels else "DownBlock2D"
                     for level in range(self.levels))

    def up_block_types(self) -> tuple[str, ...]:
        # Up blocks run from the coarsest level back to full resolution.
        return tuple("AttnUpBlock2D" if level in self.attention_levels else "UpBlock2D"
                     for level in reversed(range(self.levels)))

    def unet_kwargs(self) -> dict[str, Any]:
        """Arguments of ``UNet2DModel``; also what a pretrained folder's config must agree with."""
        return {
            "sample_size": self.resolution,
            "in_channels": 3,
            "out_channels": 3,
            "block_out_channels": self.block_out_channels,
            "layers_per_block": self.layers_per_block,
            "down_block_types": self.down_block_types(),
            "up_block_types": self.up_block_types(),
            "attention_head_dim": self.attention_head_dim,
            "norm_num_groups": self.norm_num_groups,
            "norm_eps": self.norm_eps,
            "downsample_padding": self.downsample_padding,
            "flip_sin_to_cos": self.flip_sin_to_cos,
            "freq_shift": self.freq_shift,
        }

    def scheduler_kwargs(self) -> dict[str, Any]:
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_schedule": self.beta_schedule,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "prediction_type": self.prediction_type,
            "clip_sample": self.clip_sample,
        }


# The reference study's run: diffusers train_unconditional with the layout of google/ddpm-celebahq-256
# (six levels, attention at 16x16 = level 4, converted-checkpoint details norm_eps 1e-6, padding 0,
# sin-cos order and frequency shift of the original DDPM code), randomly initialised; batch 16, lr 1e-5,
# 500 warm-up steps, EMA, fp16, 120 epochs; sampled with the full 1000-step DDPM chain.
PAPER = DDPMConfig(default_sampler="ddpm")

# Seconds on a CPU (200 steps of ~0.1 s on one core at 32x32, two levels); the same diffusion process
# and UNet details as the paper profile, only smaller.
TINY = DDPMConfig(
    resolution=32,
    block_out_channels=(16, 32),
    layers_per_block=1,
    attention_levels=(1,),
    norm_num_groups=8,
    batch_size=8,
    learning_rate=5e-4,
    lr_warmup_steps=20,
    train_steps=200,
    train_epochs=0,
    ema_max_decay=0.995,
    mixed_precision="no",
    checkpoint_every_steps=50,
)

PROFILES = {"tiny": TINY, "paper": PAPER}

# Fields that change what the saved weights mean (always checked on load) and fields that change how
# training continues (checked when resuming training). Sampling defaults may differ freely.
_MODEL_FIELDS = ("resolution", "block_out_channels", "layers_per_block", "attention_levels",
                 "attention_head_dim", "norm_num_groups", "norm_eps", "downsample_padding", "flip_sin_to_cos",
                 "freq_shift", "num_train_timesteps", "beta_schedule", "beta_start", "beta_end",
                 "prediction_type", "clip_sample")
_TRAINING_FIELDS = ("batch_size", "learning_rate", "lr_schedule", "lr_warmup_steps", "adam_beta1", "adam_beta2",
                    "adam_epsilon", "weight_decay", "grad_clip_norm", "use_ema", "ema_max_decay", "ema_inv_gamma",
                    "ema_power", "hflip_probability")


class DDPMBackend(GeneratorBackend):
    name = "ddpm"
    conditional = False
    samplers = SAMPLERS

    def __init__(self, config: DDPMConfig, device: str = "") -> None:
        super().__init__(config, device)
        self.config: DDPMConfig = config
        self.on_cuda = torch.device(self.device).type == "cuda"
        # Mixed precision only where it pays and is well-defined; CPU autocast would change results.
        self.autocast_dtype = ({"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.mixed_precision)
                               if self.on_cuda else None)
        self.noise_scheduler = DDPMScheduler(**config.scheduler_kwargs())
        self.unet: UNet2DModel | None = None
        self.ema: EMAModel | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.grad_scaler: torch.amp.GradScaler | None = None
        self.noise_generator: torch.Generator | None = None
        self._seed = 0
        self._step = 0
        self._planned_steps = 0
        self._ema_unet: UNet2DModel | None = None  # sampling copy holding the EMA weights

    # -- properties the training loop reads ----------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        return self.optimizer is not None

    def total_steps_for(self, dataset_size: int) -> int:
        if self.config.train_steps > 0:
            return self.config.train_steps
        return steps_for_epochs(self.config.train_epochs, dataset_size, self.config.batch_size)

    # -- life cycle -------------------------------------------------------------------------------------------
    def build(self, seed: int, *, total_steps: int = 0, init_from: str | None = None) -> None:
        (seed,) = check_seeds([seed])
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 0:
            raise InvalidArgument(f"total_steps must be an integer >= 0, got {total_steps!r}", field="total_steps")
        if init_from:
            unet = self._load_pretrained(init_from)
        else:
            # Seed only the initialisation, without disturbing the caller's global RNG.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derived_seed(seed, 0))
                unet = UNet2DModel(**self.config.unet_kwargs())
        unet.to(self.device)
        if self.on_cuda:
            unet.to(memory_format=torch.channels_last)
        self.unet = unet
        self._seed, self._step, self._planned_steps = seed, 0, total_steps
        self._ema_unet = None
        self.ema = self.optimizer = self.lr_scheduler = self.grad_scaler = self.noise_generator = None
        if total_steps == 0:  # sampling only: no optimiser memory
            unet.eval().requires_grad_(False)
        else:
            self._build_training(seed, total_steps)
        self.built = True

    def _build_training(self, seed: int, total_steps: int) -> None:
        config = self.config
        self.unet.train()
        self.optimizer = torch.optim.AdamW(self.unet.parameters(), lr=config.learning_rate,
                                           betas=(config.adam_beta1, config.adam_beta2),
                                           eps=config.adam_epsilon, weight_decay=config.weight_decay)
        if config.lr_schedule == "cosine":
            self.lr_scheduler = get_cosine_schedule_with_warmup(self.optimizer, config.lr_warmup_steps, total_steps)
        else:
            self.lr_scheduler = get_constant_schedule_with_warmup(self.optimizer, config.lr_warmup_steps)
        if self.autocast_dtype == torch.float16:  # bf16 has fp32's range and needs no loss scaling
            self.grad_scaler = torch.amp.GradScaler("cuda")
        if config.use_ema:
            self.ema = EMAModel(self.unet.parameters(), decay=float(config.ema_max_decay), use_ema_warmup=True,
                                inv_gamma=float(config.ema_inv_gamma), power=float(config.ema_power),
                                foreach=True)
        self.noise_generator = torch.Generator(self.device)
        self.noise_generator.manual_seed(derived_seed(seed, 1))

    def _load_pretrained(self, folder: str) -> UNet2DModel:
        """A local diffusers UNet folder (or a pipeline folder with ``unet/``) for transfer learning."""
        root = Path(folder)
        if (root / "config.json").is_file():
            subfolder = None
        elif (root / "unet" / "config.json").is_file():
            subfolder = "unet"
        else:
            raise InvalidArgument(f"init_from {folder!r} is not a diffusers UNet2DModel folder (no config.json, "
                                  "no unet/config.json)", field="init_from",
                                  hint="save one with UNet2DModel.save_pretrained or DDPMBackend.save_pretrained")
        unet = UNet2DModel.from_pretrained(root, subfolder=subfolder, local_files_only=True)
        expected = as_json(self.config.unet_kwargs())
        found = as_json({key: unet.config.get(key) for key in expected})
        differences = [f"{key}: folder {found[key]!r}, config {expected[key]!r}"
                       for key in expected if found[key] != expected[key]]
        if differences:
            raise InvalidArgument(f"init_from {folder!r} does not match the DDPM config: " + "; ".join(differences),
                                  field="init_from", hint="set the config's UNet fields to the folder's")
        return unet

    # -- training -----------------------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)

    def _require_trainable(self) -> None:
        self._require_built()
        if not self.trainable:
            raise FailedPrecondition("this DDPM backend was built for sampling only",
                                     hint="build(seed, total_steps=N) with N > 0 to train")

    def train_step(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                   conditions: torch.Tensor | None = None) -> dict[str, float]:
        # ``labels`` are accepted and unused: the benchmark trains one unconditional model per class.
        self._require_trainable()
        if self._step >= self._planned_steps:
            raise FailedPrecondition(f"the learning-rate schedule was planned for {self._planned_steps} steps "
                                     "and all have been taken", hint="build with a larger total_steps")
        if conditions is not None:
            raise InvalidArgument("ddpm is unconditional and takes no conditions", field="conditions")
        size = self.config.resolution
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise InvalidArgument(f"images must be [N, 3, {size}, {size}], got {list(images.shape)}", field="images")
        clean = images.to(self.device, torch.float32, non_blocking=True)
        if self.on_cuda:
            clean = clean.contiguous(memory_format=torch.channels_last)
        noise = torch.randn(clean.shape, generator=self.noise_generator, device=self.device)
        timesteps = torch.randint(0, self.config.num_train_timesteps, (clean.shape[0],),
                                  generator=self.noise_generator, device=self.device)
        noisy = self.noise_scheduler.add_noise(clean, noise, timesteps)
        if self.config.prediction_type == "epsilon":
            target = noise
        else:
            target = self.noise_scheduler.get_velocity(clean, noise, timesteps)

        learning_rate = self.lr_scheduler.get_last_lr()[0]
        with self._autocast():
            prediction = self.unet(noisy, timesteps).sample
        loss = F.mse_loss(prediction.float(), target)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise FailedPrecondition(f"DDPM loss is {loss_value} at step {self._step}; training diverged",
                                     hint="lower learning_rate or use mixed_precision='no'")

        self.optimizer.zero_grad(set_to_none=True)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        else:
            loss.backward()
        max_norm = self.config.grad_clip_norm if self.config.grad_clip_norm > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.unet.parameters(), max_norm)
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()
        self.lr_scheduler.step()
        metrics = {"loss": loss_value, "lr": learning_rate, "grad_norm": float(grad_norm)}
        if self.ema is not None:
            self.ema.step(self.unet.parameters())
            metrics["ema_decay"] = float(self.ema.cur_decay_value)
        self._step += 1
        self._ema_unet = None  # stale: rebuilt from the EMA on the next sample()
        return metrics

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        self._require_trainable()
        return cpu_snapshot({
            "format": STATE_FORMAT,
            "config": as_json(dataclasses.asdict(self.config)),
            "seed": self._seed,
            "step": self._step,
            "planned_steps": self._planned_steps,
            "unet": self.unet.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "grad_scaler": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "noise_rng": self.noise_generator.get_state(),
            "noise_rng_device": torch.device(self.device).type,
        })

    def load_state(self, state: dict[str, Any]) -> None:
        self._require_built()
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise FailedPrecondition(f"not a DDPM checkpoint (format {found!r}, expected {STATE_FORMAT!r})")
        self._check_compatible(state["config"])
        self.unet.load_state_dict(state["unet"])
        if self.trainable:
            self._load_training_state(state)
        elif state["ema"] is not None:  # sampling only: the EMA weights are the model
            with torch.no_grad():
                for param, shadow in zip(self.unet.parameters(), state["ema"]["shadow_params"], strict=True):
                    param.copy_(shadow)
        self._step = int(state["step"])
        self._ema_unet = None

    def _check_compatible(self, saved: dict[str, Any]) -> None:
        current = as_json(dataclasses.asdict(self.config))
        fields = _MODEL_FIELDS + (_TRAINING_FIELDS if self.trainable else ())
        differences = [f"{name}: checkpoint {saved.get(name)!r}, now {current[name]!r}"
                       for name in fields if saved.get(name) != current[name]]
        if differences:
            raise FailedPrecondition("checkpoint was made with a different DDPM config: " + "; ".join(differences))

    def _load_training_state(self, state: dict[str, Any]) -> None:
        if state["planned_steps"] != self._planned_steps:
            raise FailedPrecondition(f"checkpoint's learning-rate schedule was planned for {state['planned_steps']} "
                                     f"steps, this run for {self._planned_steps}",
                                     hint="build with the same total_steps to resume")
        if (state["ema"] is None) != (self.ema is None):
            raise FailedPrecondition("checkpoint and config disagree on use_ema")
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
            self.ema.to(device=self.device)
        if self.grad_scaler is not None and state["grad_scaler"] is not None:
            self.grad_scaler.load_state_dict(state["grad_scaler"])
        if state["noise_rng_device"] == torch.device(self.device).type:
            self.noise_generator.set_state(state["noise_rng"].cpu())
        else:
            # Resuming on another device type (CPU <-> CUDA): generator states are not portable, so
            # continue with a fresh stream derived from (seed, step); still deterministic, not bit-exact.
            self.noise_generator.manual_seed(derived_seed(int(state["seed"]), 2 + int(state["step"])))

    # -- sampling -------------------------------------------------------------------------------------------------
    def _sampling_unet(self) -> UNet2DModel:
        if self.ema is None:
            return self.unet
        if self._ema_unet is None:
            ema_unet = copy.deepcopy(self.unet).eval().requires_grad_(False)
            for param in ema_unet.parameters():
                param.grad = None
            self.ema.copy_to(ema_unet.parameters())
            self._ema_unet = ema_unet
        return self._ema_unet

    def _sampling_scheduler(self, sampler: str) -> DDPMScheduler | DDIMScheduler:
        if sampler == "ddim":
            return DDIMScheduler(**self.config.scheduler_kwargs())
        return DDPMScheduler(**self.config.scheduler_kwargs())

    def resolve_options(self, options: SamplerOptions | None) -> tuple[str, int, float, int]:
        """(sampler, steps, eta, batch size) with defaults filled in; refuses options DDPM cannot honour."""
        options = options or SamplerOptions()
        options.validate()
        sampler = options.sampler or self.config.default_sampler
        if sampler not in SAMPLERS:
            raise InvalidArgument(f"ddpm has no sampler {sampler!r}", field="sampler", hint=f"use {', '.join(SAMPLERS)}")
        if options.truncation_psi != 1.0:
            raise InvalidArgument("truncation_psi applies to GANs, not ddpm", field="truncation_psi")
        if sampler == "ddpm" and options.eta != 0.0:
            raise InvalidArgument("eta applies to the ddim sampler only", field="eta")
        default_steps = self.config.num_train_timesteps if sampler == "ddpm" else self.config.default_ddim_steps
        steps = options.steps or default_steps
        if steps > self.config.num_train_timesteps:
            raise InvalidArgument(f"steps {steps} exceeds num_train_timesteps ({self.config.num_train_timesteps})",
                                  field="steps")
        return sampler, steps, options.eta, options.batch_size or self.config.sample_batch_size

    def initial_noise(self, seeds: list[int]) -> tuple[torch.Tensor, list[torch.Generator]]:
        """x_T for each seed from its own CPU generator, and the generators (which the sampler continues)."""
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in check_seeds(seeds)]
        shape = (1, 3, self.config.resolution, self.config.resolution)
        noise = torch.cat([torch.randn(shape, generator=generator) for generator in generators])
        return noise, generators

    def sample(self, seeds: list[int], options: SamplerOptions | None = None,
               conditioning: dict[str, Any] | None = None) -> np.ndarray:
        self._require_built()
        if conditioning:
            raise InvalidArgument("ddpm is unconditional and takes no conditioning", field="conditioning")
        sampler, steps, eta, batch_size = self.resolve_options(options)
        seeds = check_seeds(list(seeds))
        unet = self._sampling_unet()
        was_training = unet.training
        unet.eval()
        try:
            batches = [self._denoise(unet, seeds[i:i + batch_size], sampler, steps, eta)
                       for i in range(0, len(seeds), batch_size)]
        finally:
            unet.train(was_training)
        size = self.config.resolution
        return np.concatenate(batches) if batches else np.zeros((0, size, size, 3), np.uint8)

    @torch.inference_mode()
    def _denoise(self, unet: UNet2DModel, seeds: list[int], sampler: str, steps: int, eta: float) -> np.ndarray:
        scheduler = self._sampling_scheduler(sampler)
        scheduler.set_timesteps(steps, device=self.device)
        noise, generators = self.initial_noise(seeds)
        sample = noise.to(self.device) * scheduler.init_noise_sigma
        extra = {"eta": eta} if sampler == "ddim" else {}
        for timestep in scheduler.timesteps:
            with self._autocast():
                prediction = unet(scheduler.scale_model_input(sample, timestep), timestep).sample
            # One generator per image: the per-step noise of image i depends only on its seed.
            sample = scheduler.step(prediction.float(), timestep, sample, generator=generators, **extra).prev_sample
        return images_to_uint8(sample)

    # -- export -----------------------------------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path) -> None:
        """The sampling weights (EMA when kept) as a diffusers folder, the scheduler and this config beside them.

        The folder loads with ``UNet2DModel.from_pretrained`` / ``DDPMPipeline`` and as ``init_from``.
        """
        self._require_built()
        folder = Path(folder)
        self._sampling_unet().save_pretrained(folder, safe_serialization=True)
        self._sampling_scheduler("ddpm").save_pretrained(folder)
        (folder / "skingenbench_config.json").write_text(self.config_json())

