"""The StyleGAN2-ADA config: declared fields with their limits, the reference study's and the CPU profiles, and
which fields define the weights (``MODEL_FIELDS``) and the training run (``TRAINING_FIELDS``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from skingenbench.services.core.config import invalid_field, setting
from skingenbench.services.generation.core.generator_config import GeneratorConfig
from skingenbench.services.generation.core.stylegan2.augment import PRESETS
from skingenbench.services.generation.core.stylegan2.synthesis import channels_at

# "stylegan": per-image random noise inputs (the papers' sampling); "stylegan_const": each layer's fixed
# noise buffer, so an image is a function of its latent alone.
SAMPLERS = ("stylegan", "stylegan_const")
NOISE_MODES = ("random", "const")
AUGMENT_MODES = ("ada", "fixed", "none")
MIXED_PRECISION = ("no", "bf16")


@dataclass(frozen=True)
class StyleGAN2Config(GeneratorConfig):
    """Everything that defines a StyleGAN2-ADA run. Defaults: ADA's ``cfg=auto`` at 256x256 on one GPU."""

    resolution: int = setting(256, "image side, a power of two", 4)
    # 0: unconditional; > 0: G embeds the class into w, D projects onto it (ADA's conditional models; projection
    # discriminator, Miyato & Koyama 2018). Through the generation service it must equal the number of requested
    # classes, class i being the i-th in sorted order (services/generation/training_job.py).
    num_classes: int = setting(0, "classes G and D are conditioned on; 0: unconditional", 0)

    # Generator. cfg=auto below 512 px: 2 mapping layers, fmaps 0.5 -> channel_base 16384, at most 512.
    z_dim: int = setting(512, "latent z width", 1)
    w_dim: int = setting(512, "intermediate latent w width", 1)
    mapping_layers: int = setting(2, "mapping network depth (8 is the FFHQ configuration)", 1)
    mapping_lr_multiplier: float = setting(0.01, "equalised learning rate of the mapping network", 1e-6, 10.0)
    w_avg_beta: float = setting(0.995, "decay of the tracked mean w (truncation centre)", 0.0, 1.0)
    channel_base: int = setting(16384, "channels = min(channel_base / side, channel_max)", 1)
    channel_max: int = setting(512, "most channels of any layer", 1)
    conv_clamp: float = setting(
        256.0, "clamp activations to +-this (reduced-precision guard); 0 disables", 0.0, math.inf
    )
    style_mixing_prob: float = setting(0.9, "chance of mixing two latents' styles in training", 0.0, 1.0)

    # Discriminator (ProGAN's minibatch standard deviation; group min(batch/GPUs, 4) in cfg=auto).
    mbstd_group_size: int = setting(4, "minibatch-stddev group size", 1)
    mbstd_channels: int = setting(1, "minibatch-stddev features; must divide the channels at 4x4", 1)

    # Optimisation. The training length is a kimg budget: total steps = ceil(train_kimg * 1000 / batch).
    batch_size: int = setting(32, "training images per step", 1)
    learning_rate: float = setting(0.0025, "Adam learning rate of G and D", 1e-9, 1.0)
    adam_beta1: float = setting(0.0, "Adam beta1", 0.0, 0.999)
    adam_beta2: float = setting(0.99, "Adam beta2", 0.0, 0.99999)
    adam_epsilon: float = setting(1e-8, "Adam epsilon", 1e-20, 1.0)
    train_kimg: float = setting(240.0, "training length in thousands of images shown to D", 1e-6, 1e6)
    r1_gamma: float = setting(
        0.8192, "R1 weight; cfg=auto: 0.0002 * res^2 / minibatch (16 at 256 px, one GPU)", 0.0, 1e6
    )
    r1_interval: int = setting(16, "minibatches between lazy R1 steps", 1)
    pl_weight: float = setting(2.0, "path-length regulariser weight; 0 disables", 0.0, 1e6)
    pl_interval: int = setting(4, "minibatches between lazy path-length steps", 1)
    pl_batch_shrink: int = setting(2, "path-length batch = batch / this", 1)
    pl_decay: float = setting(0.01, "decay of the path-length running mean", 0.0, 1.0)
    ema_kimg: float = setting(5.0, "G EMA half-life in kimg (cfg=auto: minibatch * 10 / 32)", 0.0, 1e6)
    ema_rampup: float = setting(0.05, "EMA half-life <= this x images seen; 0: no ramp-up", 0.0, 1.0)

    # Augmentation. Dataset x-flips (the loop mirrors images) and ADA on everything D sees.
    hflip_probability: float = setting(0.5, "chance the loop mirrors a training image", 0.0, 1.0)
    augment: str = setting(
        "ada", "ada: adaptive p; fixed: p = augment_p throughout; none", choices=AUGMENT_MODES
    )
    augment_transforms: str = setting("bgc", "the augmentation pipeline's preset", choices=tuple(PRESETS))
    augment_p: float = setting(0.0, "initial p (ada) or the constant p (fixed)", 0.0, 1.0)
    ada_target: float = setting(0.6, "the ADA heuristic's r_t target (the ADA paper's default)", 0.0, 1.0)
    ada_interval: int = setting(4, "minibatches between p updates", 1)
    ada_kimg: float = setting(500.0, "p can go 0 -> 1 in this many thousand images", 1e-6, 1e6)

    mixed_precision: str = setting(
        "bf16", "autocast on CUDA only; the CPU always trains in fp32", choices=MIXED_PRECISION
    )
    checkpoint_every_steps: int = setting(250, "checkpoint cadence; 0: at the end and on stop only", 0)

    # Sampling defaults.
    noise_mode: str = setting(
        "random", "noise inputs when sampling: random per image or the fixed buffers", choices=NOISE_MODES
    )
    default_truncation_psi: float = setting(
        1.0, "what a sampling job uses when the request leaves psi unset", -10.0, 10.0
    )
    sample_batch_size: int = setting(32, "images per forward pass when sampling", 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.resolution & (self.resolution - 1):
            raise invalid_field("resolution", f"must be a power of two, got {self.resolution}")
        channels_4x4 = channels_at(4, self.channel_base, self.channel_max)
        if channels_4x4 % self.mbstd_channels:
            raise invalid_field(
                "mbstd_channels", f"must divide the {channels_4x4} channels at 4x4, got {self.mbstd_channels}"
            )

    def total_steps(self) -> int:
        return math.ceil(self.train_kimg * 1000 / self.batch_size)


# The reference study's run: NVIDIA's train.py --cfg=auto at 256x256, --batch=32, --gamma left to the auto
# heuristic, lr 0.0025, --target=0.7, --mirror=1, --kimg=240; sampled with truncation psi = 0.8.
# (The study started from FFHQ-256 weights, NVIDIA's pickle: `skingenbench convert stylegan2-pkl` makes a folder
# for init_checkpoint from it without running its code; convert.py reports the mapping-depth difference, 8 vs 2.)
PAPER = StyleGAN2Config(ada_target=0.7, default_truncation_psi=0.8)

# Seconds on a CPU: 32x32, 32-dim latents, 8-32 channels, batch 8; the same losses, regularisers and
# ADA, with the controller sped up (ada_kimg 2) so that p visibly moves within a short run.
TINY = StyleGAN2Config(
    resolution=32,
    z_dim=32,
    w_dim=32,
    channel_base=256,
    channel_max=32,
    conv_clamp=0.0,
    batch_size=8,
    learning_rate=0.002,
    train_kimg=0.4,
    r1_gamma=0.0256,
    ema_kimg=0.1,
    ada_kimg=2.0,
    mixed_precision="no",
    checkpoint_every_steps=25,
    sample_batch_size=8,
)

PROFILES = {"tiny": TINY, "paper": PAPER}

# Fields that change what saved weights mean (always checked on load) and those that change how training
# continues (checked when resuming training). Sampling defaults, the checkpoint cadence and the kimg budget may
# differ (StyleGAN2-ADA has no learning-rate schedule: the budget only says when to stop).
MODEL_FIELDS = (
    "resolution",
    "num_classes",
    "z_dim",
    "w_dim",
    "mapping_layers",
    "mapping_lr_multiplier",
    "channel_base",
    "channel_max",
    "mbstd_group_size",
    "mbstd_channels",
)
TRAINING_FIELDS = (
    "w_avg_beta",
    "conv_clamp",
    "style_mixing_prob",
    "batch_size",
    "learning_rate",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "r1_gamma",
    "r1_interval",
    "pl_weight",
    "pl_interval",
    "pl_batch_shrink",
    "pl_decay",
    "ema_kimg",
    "ema_rampup",
    "hflip_probability",
    "augment",
    "augment_transforms",
    "ada_target",
    "ada_interval",
    "ada_kimg",
)
