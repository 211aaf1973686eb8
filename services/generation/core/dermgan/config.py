"""The DermGAN config: declared fields with their limits, the ``paper`` (Pix2Pix at 256 px with DermGAN's
lesion-weighted L1) and CPU profiles, and which fields define the weights (``MODEL_FIELDS``) and the training
run (``TRAINING_FIELDS``)."""

from __future__ import annotations

from dataclasses import dataclass

from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.config import invalid_field, setting
from skingenbench.services.generation.core.dermgan.losses import GAN_MODES
from skingenbench.services.generation.core.dermgan.semantic_map import MapLayout
from skingenbench.services.generation.core.generator_config import StepsOrEpochsConfig

SAMPLERS = ("pix2pix",)
MIXED_PRECISION = ("no", "bf16")


@dataclass(frozen=True)
class DermGANConfig(StepsOrEpochsConfig):
    """Everything that defines a DermGAN run. Class defaults are the ``paper`` profile."""

    resolution: int = setting(256, "image side; generator_levels halvings must divide it", 8, 4096)
    classes: tuple[str, ...] = setting(CLASSES, "distinct classes, one map channel each", choices=CLASSES)
    noise_channel: bool = setting(True, "a noise channel in the semantic map")

    # U-Net generator: ``generator_levels`` halvings (8 takes 256 px to 1x1, as Pix2Pix's U-Net-256).
    generator_width: int = setting(64, "channels of the first encoder block", 1, 4096)
    generator_max_width: int = setting(512, "most channels of any block (at least generator_width)", 1, 8192)
    generator_levels: int = setting(8, "U-Net halvings", 2, 12)
    dropout: float = setting(0.5, "dropout in the dropout_blocks innermost decoder blocks", 0.0, 0.9)
    dropout_blocks: int = setting(
        3, "innermost decoder blocks with dropout (Pix2Pix: 3), < generator_levels", 0, 11
    )
    sample_dropout: bool = setting(True, "keep dropout on when sampling (Pix2Pix's source of diversity)")

    # PatchGAN discriminator: 3 layers = 70x70 patches.
    discriminator_width: int = setting(64, "channels of the first critic layer", 1, 4096)
    discriminator_layers: int = setting(
        3, "critic halvings (3: 70x70 patches); the patch grid stays >= 3", 1, 8
    )

    # Objective and optimisation. Give either ``train_steps`` or ``train_epochs`` (the other 0).
    gan_mode: str = setting("vanilla", "adversarial loss", choices=GAN_MODES)
    lambda_l1: float = setting(100.0, "weight of the reconstruction term", 0.0, 1e6)
    lesion_l1_weight: float = setting(
        5.0, "L1 weight inside the lesion relative to the skin (DermGAN)", 1.0, 1e3
    )
    batch_size: int = setting(4, "training images per step", 1, 4096)
    learning_rate: float = setting(2e-4, "Adam learning rate of G and D", 1e-12, 1.0)
    adam_beta1: float = setting(0.5, "Adam beta1", 0.0, 0.999999)
    adam_beta2: float = setting(0.999, "Adam beta2", 0.0, 0.999999)
    train_steps: int = setting(0, "training length in steps (or 0 and train_epochs)", 0, 10**9)
    train_epochs: int = setting(200, "training length in epochs (or 0 and train_steps)", 0, 10**6)
    lr_decay_start: float = setting(
        0.5, "fraction of training after which the learning rate decays linearly", 0.0, 1.0
    )
    hflip_probability: float = setting(0.5, "chance the loop mirrors a training image and its map", 0.0, 1.0)
    mixed_precision: str = setting("no", "bf16: autocast on CUDA only", choices=MIXED_PRECISION)
    checkpoint_every_steps: int = setting(
        1000, "checkpoint cadence; 0: at the end and on stop only", 0, 10**9
    )
    sample_batch_size: int = setting(16, "images per forward pass when sampling", 1, 4096)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise invalid_field(
                "classes", f"must be distinct names from {', '.join(CLASSES)}, got {self.classes!r}"
            )
        if self.generator_max_width < self.generator_width:
            raise invalid_field(
                "generator_max_width",
                f"must be at least generator_width ({self.generator_width}), got {self.generator_max_width}",
            )
        if self.resolution % 2**self.generator_levels:
            raise invalid_field(
                "generator_levels",
                f"{self.generator_levels} halvings do not divide resolution {self.resolution}",
            )
        if self.dropout_blocks > self.generator_levels - 1:
            raise invalid_field(
                "dropout_blocks",
                f"must be < generator_levels ({self.generator_levels}), got {self.dropout_blocks}",
            )
        if self.resolution // 2**self.discriminator_layers < 3:
            raise invalid_field(
                "discriminator_layers",
                f"{self.discriminator_layers} halvings leave no patch grid "
                f"at {self.resolution} px (the side must stay >= 3)",
            )
        self._check_steps_or_epochs()

    @property
    def layout(self) -> MapLayout:
        return MapLayout(self.classes, self.noise_channel)


# Pix2Pix at 256 px (U-Net-256, 70x70 PatchGAN, lambda_L1 100, Adam 2e-4 / (0.5, 0.999), 100 + 100 epochs)
# with DermGAN's lesion-weighted L1 (x5). Batch 4: Pix2Pix used 1-10 by data set; with instance norm the
# batch size does not change the normalisation, and 4 keeps a GPU busy on ~1,100 training melanomas.
PAPER = DermGANConfig()

# Seconds on a CPU: 32 px, five halvings, narrow layers, a 2-layer PatchGAN; a higher learning rate so
# a few hundred steps learn the colour and the lesion region.
TINY = DermGANConfig(
    resolution=32,
    generator_width=16,
    generator_max_width=64,
    generator_levels=5,
    dropout_blocks=2,
    discriminator_width=16,
    discriminator_layers=2,
    batch_size=8,
    learning_rate=1e-3,
    train_steps=200,
    train_epochs=0,
    checkpoint_every_steps=50,
    sample_batch_size=16,
)

PROFILES = {"tiny": TINY, "paper": PAPER}

# Fields that change what the weights mean (always checked on load) and how training continues.
MODEL_FIELDS = (
    "resolution",
    "classes",
    "noise_channel",
    "generator_width",
    "generator_max_width",
    "generator_levels",
    "dropout",
    "dropout_blocks",
    "discriminator_width",
    "discriminator_layers",
)
TRAINING_FIELDS = (
    "gan_mode",
    "lambda_l1",
    "lesion_l1_weight",
    "batch_size",
    "learning_rate",
    "adam_beta1",
    "adam_beta2",
    "lr_decay_start",
    "hflip_probability",
    "mixed_precision",
)
