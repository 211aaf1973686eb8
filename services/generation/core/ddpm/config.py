"""The DDPM config: declared fields with their limits (the UNet2DModel layout, the forward process, the
optimisation recipe of diffusers' ``train_unconditional``, sampling defaults), the reference study's and the
CPU profiles, and which fields define the weights (``MODEL_FIELDS``) and the training run (``TRAINING_FIELDS``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from skingenbench.services.core.config import invalid_field, setting
from skingenbench.services.generation.core.generator_config import StepsOrEpochsConfig

SAMPLERS = ("ddpm", "ddim", "dpm_solver")
# DPM-Solver++ steps when a request gives none: Lu et al. 2022 report converged samples in 15-20 steps. A module
# constant, not a config field: a new field would change every DDPM config's hash, hence every model's address.
DEFAULT_DPM_SOLVER_STEPS = 20
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction")
LR_SCHEDULES = ("cosine", "constant")
MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass(frozen=True)
class DDPMConfig(StepsOrEpochsConfig):
    """Everything that defines a DDPM run. Class defaults are the reference study's training recipe."""

    resolution: int = setting(
        256, "side of the square images; must halve cleanly at every down-sampling level", 1
    )

    # UNet2DModel. One level per entry of ``block_out_channels``; levels are numbered from the full
    # resolution (0) down. ``attention_levels`` puts self-attention in that level's down block and in
    # the mirrored up block (the mid block always has attention, as in diffusers).
    block_out_channels: tuple[int, ...] = setting(
        (128, 128, 256, 256, 512, 512), "UNet channels per level", 1
    )
    layers_per_block: int = setting(2, "ResNet layers per UNet block", 1)
    attention_levels: tuple[int, ...] = setting(
        (4,), "levels with self-attention in their down and up blocks", 0
    )
    attention_head_dim: int | None = setting(
        None, "attention head width; None: one head as wide as the block", 1
    )
    norm_num_groups: int = setting(32, "GroupNorm groups; must divide every level's channels", 1)
    norm_eps: float = setting(1e-6, "GroupNorm epsilon", 0.0, 1.0, low_open=True)
    downsample_padding: int = setting(0, "padding of the down-sampling convolutions", 0)
    flip_sin_to_cos: bool = setting(False, "cos-then-sin order of the timestep embedding")
    freq_shift: int = setting(1, "frequency shift of the timestep embedding", 0)

    # Forward (noising) process, shared by the training scheduler and both samplers.
    num_train_timesteps: int = setting(1000, "diffusion steps T", 2)
    beta_schedule: str = setting("linear", "noise schedule", choices=BETA_SCHEDULES)
    beta_start: float = setting(1e-4, "beta_1", 0.0, 1.0, low_open=True, high_open=True)
    beta_end: float = setting(
        0.02, "beta_T (above beta_start unless squaredcos_cap_v2)", 0.0, 1.0, low_open=True, high_open=True
    )
    prediction_type: str = setting("epsilon", "what the network regresses", choices=PREDICTION_TYPES)
    clip_sample: bool = setting(True, "clip the predicted x_0 to [-1, 1] while sampling")

    # Optimisation. Give either ``train_steps`` or ``train_epochs`` (the other 0); epochs become
    # steps with backend.steps_for_epochs: ceil(epochs * dataset_size / batch_size).
    batch_size: int = setting(16, "training images per step", 1)
    learning_rate: float = setting(1e-5, "AdamW peak learning rate", 0.0, 1.0, low_open=True)
    lr_schedule: str = setting(
        "cosine", "after the warm-up: half-cosine decay or constant", choices=LR_SCHEDULES
    )
    lr_warmup_steps: int = setting(500, "linear learning-rate warm-up", 0)
    train_steps: int = setting(0, "training length in steps (or 0 and train_epochs)", 0)
    train_epochs: int = setting(120, "training length in epochs (or 0 and train_steps)", 0)
    adam_beta1: float = setting(0.95, "AdamW beta1", 0.0, 1.0, high_open=True)
    adam_beta2: float = setting(0.999, "AdamW beta2", 0.0, 1.0, high_open=True)
    adam_epsilon: float = setting(1e-8, "AdamW epsilon", 0.0, 1.0, low_open=True)
    weight_decay: float = setting(1e-6, "AdamW weight decay", 0.0, 1.0)
    grad_clip_norm: float = setting(
        1.0, "gradient-norm clip; 0 disables (the norm is still reported)", 0.0, math.inf, high_open=True
    )
    use_ema: bool = setting(True, "keep an EMA of the weights and sample with it")
    ema_max_decay: float = setting(0.9999, "cap of the EMA decay", 0.0, 1.0)
    ema_inv_gamma: float = setting(1.0, "EMA warm-up inv_gamma", 0.0, math.inf, low_open=True, high_open=True)
    ema_power: float = setting(0.75, "EMA warm-up power", 0.0, math.inf, low_open=True, high_open=True)
    hflip_probability: float = setting(0.5, "chance the loop mirrors a training image", 0.0, 1.0)
    mixed_precision: str = setting(
        "fp16", "autocast on CUDA only; the CPU always trains in fp32", choices=MIXED_PRECISION
    )
    checkpoint_every_steps: int = setting(1000, "checkpoint cadence; 0: at the end and on stop only", 0)

    # Sampling defaults. ``ddpm`` always defaults to the full chain of num_train_timesteps steps, ``dpm_solver`` to
    # DEFAULT_DPM_SOLVER_STEPS.
    default_sampler: str = setting("ddim", "sampler when a request names none", choices=SAMPLERS)
    default_ddim_steps: int = setting(50, "DDIM steps when a request gives none", 1)
    sample_batch_size: int = setting(16, "images per forward pass when sampling", 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.block_out_channels:
            raise invalid_field("block_out_channels", "must be a non-empty list of channel counts")
        for channels in self.block_out_channels:
            if channels % self.norm_num_groups:
                raise invalid_field(
                    "block_out_channels",
                    f"{channels} channels do not split into norm_num_groups={self.norm_num_groups}",
                )
        factor = 2 ** (self.levels - 1)
        if self.resolution % factor:
            raise invalid_field(
                "resolution",
                f"{self.resolution} is not divisible by 2**(levels-1) = {factor} for {self.levels} levels",
            )
        if len(set(self.attention_levels)) != len(self.attention_levels) or any(
            level >= self.levels for level in self.attention_levels
        ):
            raise invalid_field(
                "attention_levels",
                f"must be distinct level indices in [0, {self.levels}), got {self.attention_levels!r}",
            )
        if self.attention_head_dim is not None:
            for level in (*self.attention_levels, self.levels - 1):
                if self.block_out_channels[level] % self.attention_head_dim:
                    raise invalid_field(
                        "attention_head_dim",
                        f"{self.attention_head_dim} does not divide the "
                        f"{self.block_out_channels[level]} channels of level {level}",
                    )
        if self.beta_schedule != "squaredcos_cap_v2" and self.beta_start >= self.beta_end:
            raise invalid_field(
                "beta_end", f"must exceed beta_start ({self.beta_start}), got {self.beta_end}"
            )
        self._check_steps_or_epochs()
        if self.default_ddim_steps > self.num_train_timesteps:
            raise invalid_field(
                "default_ddim_steps",
                f"{self.default_ddim_steps} exceeds num_train_timesteps ({self.num_train_timesteps})",
            )

    @property
    def levels(self) -> int:
        return len(self.block_out_channels)

    def down_block_types(self) -> tuple[str, ...]:
        return tuple(
            "AttnDownBlock2D" if level in self.attention_levels else "DownBlock2D"
            for level in range(self.levels)
        )

    def up_block_types(self) -> tuple[str, ...]:
        # Up blocks run from the coarsest level back to full resolution.
        return tuple(
            "AttnUpBlock2D" if level in self.attention_levels else "UpBlock2D"
            for level in reversed(range(self.levels))
        )

    def unet_kwargs(self) -> dict[str, object]:
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

    def scheduler_kwargs(self) -> dict[str, object]:
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

# Fields that change what the saved weights mean (always checked on load: the network and the diffusion
# process it denoises) and fields that change how training continues (checked when resuming training).
# Sampling defaults, the checkpoint cadence and the training length may differ freely.
MODEL_FIELDS = (
    "resolution",
    "block_out_channels",
    "layers_per_block",
    "attention_levels",
    "attention_head_dim",
    "norm_num_groups",
    "norm_eps",
    "downsample_padding",
    "flip_sin_to_cos",
    "freq_shift",
    "num_train_timesteps",
    "beta_schedule",
    "beta_start",
    "beta_end",
    "prediction_type",
    "clip_sample",
)
TRAINING_FIELDS = (
    "batch_size",
    "learning_rate",
    "lr_schedule",
    "lr_warmup_steps",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "weight_decay",
    "grad_clip_norm",
    "use_ema",
    "ema_max_decay",
    "ema_inv_gamma",
    "ema_power",
    "hflip_probability",
)
