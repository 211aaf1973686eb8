"""DermGAN backend: a conditional Pix2Pix generator from semantic maps (Ghorbani et al. 2019).

Training follows Pix2Pix (Isola et al. 2017) as its reference code runs it: per step one
discriminator update on (map, real) against (map, G(map)) with the halved loss, then one generator
update on the adversarial term plus lambda_L1 = 100 times the L1 distance -- here DermGAN's
lesion-weighted L1. Adam with lr 2e-4 and betas (0.5, 0.999) for both networks; the learning rate is
constant for the first half of training and decays linearly towards 0 over the second (Pix2Pix's
100 + 100 epochs). Mirroring is the only augmentation (the training loop mirrors map and image together).

The training loop hands ``train_step`` the semantic maps as ``conditions``; the noise channel is
redrawn at every step from the backend's CPU generator, which also drives dropout, so a resumed run
continues bit-exactly. ``sample`` builds the maps from ``conditioning`` (parameters, per-image
parameters, or explicit maps) and draws noise channel and dropout masks from each image's own seed.
The distribution that unspecified parameters are drawn from (``conditioning.ConditionDistribution``)
comes from the training items (``training_set``) and is saved with the weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from skingenbench.services.core.classes import CLASSES
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
from skingenbench.services.generation.core.dermgan import networks
from skingenbench.services.generation.core.dermgan.conditioning import (
    ConditionDistribution,
    ConditionRecord,
    parse_conditioning,
    resolve_request,
)
from skingenbench.services.generation.core.dermgan.losses import GAN_MODES, discriminator_loss, generator_loss
from skingenbench.services.generation.core.dermgan.semantic_map import (
    MapLayout,
    MapParams,
    map_from_mask,
    map_from_params,
)

SAMPLERS = ("pix2pix",)
MIXED_PRECISION = ("no", "bf16")
STATE_FORMAT = "skingenbench.dermgan/1"


def _invalid(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {message}", field=field)


def _number(config: Any, field: str, low: float, high: float, integer: bool = False) -> None:
    value = getattr(config, field)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or not low <= value <= high:
        raise _invalid(field, f"must be {'an integer' if integer else 'a number'} in [{low}, {high}], got {value!r}")


def _choice(config: Any, field: str, choices: tuple[Any, ...]) -> None:
    if getattr(config, field) not in choices:
        raise _invalid(field, f"must be one of {', '.join(map(str, choices))}; got {getattr(config, field)!r}")


@dataclass(frozen=True)
class DermGANConfig:
    """Everything that defines a DermGAN run. Class defaults are the ``paper`` profile."""

    resolution: int = 256
    classes: tuple[str, ...] = CLASSES  # one map channel each
    noise_channel: bool = True

    # U-Net generator: ``generator_levels`` halvings (8 takes 256 px to 1x1, as Pix2Pix's U-Net-256).
    generator_width: int = 64
    generator_max_width: int = 512
    generator_levels: int = 8
    dropout: float = 0.5  # in the ``dropout_blocks`` innermost decoder blocks (Pix2Pix: 3)
    dropout_blocks: int = 3
    sample_dropout: bool = True  # keep dropout on when sampling (Pix2Pix's source of diversity)

    # PatchGAN discriminator: 3 layers = 70x70 patches.
    discriminator_width: int = 64
    discriminator_layers: int = 3

    # Objective and optimisation. Give either ``train_steps`` or ``train_epochs`` (the other 0).
    gan_mode: str = "vanilla"
    lambda_l1: float = 100.0
    lesion_l1_weight: float = 5.0
    batch_size: int = 4
    learning_rate: float = 2e-4
    adam_beta1: float = 0.5
    adam_beta2: float = 0.999
    train_steps: int = 0
    train_epochs: int = 200
    lr_decay_start: float = 0.5  # fraction of training after which the learning rate decays linearly
    hflip_probability: float = 0.5
    mixed_precision: str = "no"  # "bf16": autocast on CUDA only
    checkpoint_every_steps: int = 1000
    sample_batch_size: int = 16

    def __post_init__(self) -> None:
        if isinstance(self.classes, list):  # JSON gives lists; tuples compare and hash
            object.__setattr__(self, "classes", tuple(self.classes))

    def validate(self) -> None:
        _number(self, "resolution", 8, 4096, integer=True)
        if not self.classes or len(set(self.classes)) != len(self.classes) or not set(self.classes) <= set(CLASSES):
            raise _invalid("classes", f"must be distinct names from {', '.join(CLASSES)}, got {self.classes!r}")
        for field in ("noise_channel", "sample_dropout"):
            if not isinstance(getattr(self, field), bool):
                raise _invalid(field, f"must be true or false, got {getattr(self, field)!r}")
        _number(self, "generator_width", 1, 4096, integer=True)
        _number(self, "generator_max_width", self.generator_width, 8192, integer=True)
        _number(self, "generator_levels", 2, 12, integer=True)
        if self.resolution % 2**self.generator_levels:
            raise _invalid("generator_levels", f"{self.generator_levels} halvings do not divide resolution "
                                               f"{self.resolution}")
        _number(self, "dropout", 0.0, 0.9)
        _number(self, "dropout_blocks", 0, self.generator_levels - 1, integer=True)
        _number(self, "discriminator_width", 1, 4096, integer=True)
        _number(self, "discriminator_layers", 1, 8, integer=True)
        if self.resolution // 2**self.discriminator_layers < 3:
            raise _invalid("discriminator_layers", f"{self.discriminator_layers} halvings leave no patch grid at "
                                                   f"{self.resolution} px (the side must stay >= 3)")
        _choice(self, "gan_mode", GAN_MODES)
        _number(self, "lambda_l1", 0.0, 1e6)
        _number(self, "lesion_l1_weight", 1.0, 1e3)
        _number(self, "batch_size", 1, 4096, integer=True)
        _number(self, "learning_rate", 1e-12, 1.0)
        _number(self, "adam_beta1", 0.0, 0.999999)
        _number(self, "adam_beta2", 0.0, 0.999999)
        _number(self, "train_steps", 0, 10**9, integer=True)
        _number(self, "train_epochs", 0, 10**6, integer=True)
        if (self.train_steps > 0) == (self.train_epochs > 0):
            raise _invalid("train_steps", "give exactly one of train_steps and train_epochs (the other 0)")
        _number(self, "lr_decay_start", 0.0, 1.0)
        _number(self, "hflip_probability", 0.0, 1.0)
        _choice(self, "mixed_precision", MIXED_PRECISION)
        _number(self, "checkpoint_every_steps", 0, 10**9, integer=True)
        _number(self, "sample_batch_size", 1, 4096, integer=True)

    @property
    def layout(self) -> MapLayout:
        return MapLayout(self.classes, self.noise_channel)


# Pix2Pix at 256 px (U-Net-256, 70x70 PatchGAN, lambda_L1 100, Adam 2e-4 / (0.5, 0.999), 100 + 100 epochs)
# with DermGAN's lesion-weighted L1 (x5). Batch 4: Pix2Pix used 1-10 by data set; with instance norm the
# batch size does not change the normalisation, and 4 keeps a GPU busy on ~1,100 training melanomas.
PAPER = DermGANConfig()

# Seconds on a CPU: 32 px, five halvings, narrow layers, a 2-layer PatchGAN; a higher learning rate so
# a few hundred steps learn the colour and the lesion region.
TINY = DermGANConfig(resolution=32, generator_width=16, generator_max_width=64, generator_levels=5, dropout_blocks=2,
                     discriminator_width=16, discriminator_layers=2, batch_size=8, learning_rate=1e-3,
                     train_steps=200, train_epochs=0, checkpoint_every_steps=50, sample_batch_size=16)

PROFILES = {"tiny": TINY, "paper": PAPER}

# Fields that change what the weights mean (always checked on load) and how training continues.
_MODEL_FIELDS = ("resolution", "classes", "noise_channel", "generator_width", "generator_max_width",
                 "generator_levels", "dropout", "dropout_blocks", "discriminator_width", "discriminator_layers")
_TRAINING_FIELDS = ("gan_mode", "lambda_l1", "lesion_l1_weight", "batch_size", "learning_rate", "adam_beta1",
                    "adam_beta2", "lr_decay_start", "hflip_probability", "mixed_precision")


class DermGANBackend(GeneratorBackend):
    name = "dermgan"
    model_fields = _MODEL_FIELDS
    conditional = True
    samplers = SAMPLERS

    def __init__(self, config: DermGANConfig, device: str = "") -> None:
        super().__init__(config, device)
        self.config: DermGANConfig = config
        self.layout = config.layout
        self.on_cuda = torch.device(self.device).type == "cuda"
        self.autocast_dtype = torch.bfloat16 if self.on_cuda and config.mixed_precision == "bf16" else None
        self.generator: networks.UNetGenerator | None = None
        self.discriminator: networks.PatchDiscriminator | None = None
        self.optimizer_g: torch.optim.Adam | None = None
        self.optimizer_d: torch.optim.Adam | None = None
        self.train_rng: torch.Generator | None = None
        self.conditions: ConditionDistribution | None = None
        self._seed = self._step = self._planned_steps = 0

    # -- what the training loop reads -------------------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        return self.optimizer_g is not None

    def total_steps_for(self, dataset_size: int) -> int:
        if self.config.train_steps > 0:
            return self.config.train_steps
        return steps_for_epochs(self.config.train_epochs, dataset_size, self.config.batch_size)

    # -- life cycle ---------------------------------------------------------------------------------------------
    def build(self, seed: int, *, total_steps: int = 0, init_from: str | None = None) -> None:
        (seed,) = check_seeds([seed])
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 0:
            raise InvalidArgument(f"total_steps must be an integer >= 0, got {total_steps!r}", field="total_steps")
        config = self.config
        with torch.random.fork_rng(devices=[]):  # seed the initialisation without touching the caller's RNG
            torch.manual_seed(derived_seed(seed, 0))
            generator = networks.UNetGenerator(self.layout.channels, 3, config.generator_width,
                                               config.generator_max_width, config.generator_levels,
                                               config.dropout, config.dropout_blocks)
            networks.init_pix2pix_weights(generator)
            discriminator = None
            if total_steps > 0:  # sampling needs no critic
                discriminator = networks.PatchDiscriminator(self.layout.channels - int(config.noise_channel) + 3,
                                                            config.discriminator_width, config.discriminator_layers)
                networks.init_pix2pix_weights(discriminator)
        if init_from:
            self._load_pretrained(init_from, generator, discriminator)
        memory_format = torch.channels_last if self.on_cuda else torch.contiguous_format
        self.generator = generator.to(self.device, memory_format=memory_format)
        self.discriminator = discriminator.to(self.device, memory_format=memory_format) if discriminator else None
        self._seed, self._step, self._planned_steps = seed, 0, total_steps
        self.optimizer_g = self.optimizer_d = self.train_rng = None
        if total_steps == 0:
            self.generator.eval().requires_grad_(False)
        else:
            betas = (config.adam_beta1, config.adam_beta2)
            self.optimizer_g = torch.optim.Adam(self.generator.parameters(), lr=config.learning_rate, betas=betas)
            self.optimizer_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.learning_rate, betas=betas)
            self.train_rng = torch.Generator("cpu").manual_seed(derived_seed(seed, 1))
        self.built = True

    def set_condition_distribution(self, distribution: ConditionDistribution | Sequence[ConditionRecord]) -> None:
        """The training items' (class, area, centre, ITA) distribution that sampling draws missing parameters from."""
        if not isinstance(distribution, ConditionDistribution):
            distribution = ConditionDistribution(list(distribution), self.config.classes)
        if distribution.classes != self.config.classes:
            raise InvalidArgument(f"distribution over classes {distribution.classes}, model over {self.config.classes}",
                                  field="classes")
        self.conditions = distribution

    def training_set(self, examples: Iterable[tuple[Any, Any, float | None, str]],
                     ) -> tuple[list[tuple[Any, int, np.ndarray]], int]:
        """(dataset for ``training.train``, items skipped) from (image, lesion mask, ITA, class) of real items.

        Images pass through unchanged (the loop resizes them); maps are built at the training resolution.
        Items without a segmented lesion or a skin tone are skipped. Sets the condition distribution.
        """
        dataset, records, skipped = [], [], 0
        for image, mask, ita, label in examples:
            if label not in self.config.classes:
                raise InvalidArgument(f"class {label!r} is not one of this model's {self.config.classes}",
                                      field="label")
            try:
                semantic = map_from_mask(mask, ita, label, self.config.resolution, self.layout)
            except InvalidArgument:
                skipped += 1
                continue
            dataset.append((image, self.layout.class_index(label), semantic))
            records.append(ConditionRecord.from_mask(mask, float(ita), label, self.config.resolution))
        if not dataset:
            raise InvalidArgument(f"none of the {skipped} items has both a lesion mask and a skin tone",
                                  field="dataset", hint="preprocess with lesion segmentation and skin tone on")
        self.set_condition_distribution(records)
        return dataset, skipped

    def _load_pretrained(self, folder: str, generator: torch.nn.Module, discriminator: torch.nn.Module | None) -> None:
        """A folder written by ``save_pretrained`` (transfer learning); nothing is downloaded."""
        root = Path(folder)
        config_file = root / "skingenbench_config.json"
        if not (root / "generator.safetensors").is_file() or not config_file.is_file():
            raise InvalidArgument(f"init_from {folder!r} is not a DermGAN folder (generator.safetensors and "
                                  "skingenbench_config.json)", field="init_from",
                                  hint="write one with DermGANBackend.save_pretrained")
        saved = json.loads(config_file.read_text())["config"]
        self.check_config_fields(saved, _MODEL_FIELDS, "init_from folder")
        generator.load_state_dict(load_file(root / "generator.safetensors"))
        if discriminator is not None and (root / "discriminator.safetensors").is_file():
            discriminator.load_state_dict(load_file(root / "discriminator.safetensors"))
        if self.conditions is None and (root / "conditions.json").is_file():  # training_set's own comes first
            saved_conditions = json.loads((root / "conditions.json").read_text())
            self.conditions = ConditionDistribution.from_state({
                "classes": saved_conditions["classes"], "labels": torch.tensor(saved_conditions["labels"]),
                "values": torch.tensor(saved_conditions["values"], dtype=torch.float64)})

    # -- training -------------------------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)

    def learning_rate_at(self, step: int) -> float:
        """Constant, then linear decay from ``lr_decay_start`` of the planned steps (Pix2Pix's schedule)."""
        start = round(self.config.lr_decay_start * self._planned_steps)
        if step < start:
            return self.config.learning_rate
        return self.config.learning_rate * (1.0 - (step - start) / (self._planned_steps - start + 1))

    def _with_noise(self, maps: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if self.layout.noise_index is None:
            return maps
        maps = maps.clone()
        maps[:, self.layout.noise_index] = noise.to(maps.device)
        return maps

    def _critic_input(self, maps: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """(map without its noise channel, image): the noise says nothing about whether a pair is real."""
        keep = maps[:, :self.layout.noise_index] if self.layout.noise_index is not None else maps
        return torch.cat([keep, images], dim=1)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                   conditions: torch.Tensor | None = None) -> dict[str, float]:
        # ``labels`` are redundant with the map's class channels and unused.
        self._require_built()
        if not self.trainable:
            raise FailedPrecondition("this DermGAN backend was built for sampling only",
                                     hint="build(seed, total_steps=N) with N > 0 to train")
        if self._step >= self._planned_steps:
            raise FailedPrecondition(f"training was planned for {self._planned_steps} steps and all have been taken",
                                     hint="build with a larger total_steps")
        size, channels = self.config.resolution, self.layout.channels
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise InvalidArgument(f"images must be [N, 3, {size}, {size}], got {list(images.shape)}", field="images")
        if conditions is None:
            raise InvalidArgument("dermgan is conditional: every training image needs its semantic map",
                                  field="conditions", hint="build the data set with DermGANBackend.training_set")
        if tuple(conditions.shape) != (images.shape[0], channels, size, size):
            raise InvalidArgument(f"conditions must be [N, {channels}, {size}, {size}], got {list(conditions.shape)}",
                                  field="conditions")
        memory_format = torch.channels_last if self.on_cuda else torch.contiguous_format
        real = images.to(self.device, torch.float32).contiguous(memory_format=memory_format)
        maps = conditions.to(self.device, torch.float32)
        maps = self._with_noise(maps, torch.randn(maps.shape[0], size, size, generator=self.train_rng))
        maps = maps.contiguous(memory_format=memory_format)
        lesion = maps[:, self.layout.class_channels].sum(dim=1, keepdim=True).clamp(0.0, 1.0)
        learning_rate = self.learning_rate_at(self._step)
        for optimizer in (self.optimizer_g, self.optimizer_d):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate

        with self._autocast():
            fake = self.generator(maps, self.train_rng).float()
        # Discriminator: real pairs towards 1, generated pairs (no gradient into G) towards 0.
        self.discriminator.requires_grad_(True)
        with self._autocast():
            real_logits = self.discriminator(self._critic_input(maps, real)).float()
            fake_logits = self.discriminator(self._critic_input(maps, fake.detach())).float()
        loss_d = discriminator_loss(real_logits, fake_logits, self.config.gan_mode)
        self.optimizer_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizer_d.step()
        # Generator: fool the (just updated) critic and reconstruct, the lesion weighted more.
        self.discriminator.requires_grad_(False)
        with self._autocast():
            fooled_logits = self.discriminator(self._critic_input(maps, fake)).float()
        loss_g, parts = generator_loss(fooled_logits, fake, real, lesion, self.config.lambda_l1,
                                       self.config.lesion_l1_weight, self.config.gan_mode)
        self.optimizer_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizer_g.step()

        metrics = {"loss": loss_g.item(), "loss_d": loss_d.item(), "lr": learning_rate,
                   **{name: value.item() for name, value in parts.items()},
                   "d_real_logit": real_logits.mean().item(), "d_fake_logit": fake_logits.mean().item()}
        if not all(math.isfinite(value) for value in metrics.values()):
            raise FailedPrecondition(f"DermGAN losses are not finite at step {self._step}: {metrics}",
                                     hint="lower learning_rate or use mixed_precision='no'")
        self._step += 1
        return metrics

    # -- checkpoints ------------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        self._require_built()
        if not self.trainable:
            raise FailedPrecondition("a sampling-only DermGAN backend has no training state")
        return cpu_snapshot({
            "format": STATE_FORMAT,
            "config": as_json(dataclasses.asdict(self.config)),
            "seed": self._seed,
            "step": self._step,
            "planned_steps": self._planned_steps,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "optimizer_g": self.optimizer_g.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
            "train_rng": self.train_rng.get_state(),
            "conditions": self.conditions.to_state() if self.conditions is not None else None,
        })

    def load_state(self, state: dict[str, Any]) -> None:
        self._require_built()
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise FailedPrecondition(f"not a DermGAN checkpoint (format {found!r}, expected {STATE_FORMAT!r})")
        self.check_config_fields(state["config"], _MODEL_FIELDS + (_TRAINING_FIELDS if self.trainable else ()), "checkpoint")
        self.generator.load_state_dict(state["generator"])
        if self.trainable:
            if state["planned_steps"] != self._planned_steps:
                raise FailedPrecondition(f"checkpoint's schedule was planned for {state['planned_steps']} steps, "
                                         f"this run for {self._planned_steps}", hint="build with the same total_steps")
            self.discriminator.load_state_dict(state["discriminator"])
            self.optimizer_g.load_state_dict(state["optimizer_g"])
            self.optimizer_d.load_state_dict(state["optimizer_d"])
            self.train_rng.set_state(state["train_rng"].cpu())
        conditions = state.get("conditions")
        self.conditions = ConditionDistribution.from_state(conditions) if conditions is not None else None
        self._step = int(state["step"])


    # -- sampling -----------------------------------------------------------------------------------------------------
    def resolve_conditioning(self, seeds: list[int], conditioning: Any = None) -> list[MapParams | None]:
        """The map parameters image i is drawn with (None for explicit maps); a pure function of seeds[i]
        and its request, so a manifest can record them and a later call rebuilds the same map."""
        seeds = check_seeds(list(seeds))
        requests, maps = parse_conditioning(conditioning, len(seeds), self.layout, self.config.resolution)
        if maps is not None:
            return [None] * len(seeds)
        return [resolve_request(seed, request, self.conditions) for seed, request in zip(seeds, requests, strict=True)]

    def condition_maps(self, seeds: list[int], conditioning: Any = None) -> np.ndarray:
        """Semantic maps [N, R, R, C] for the seeds (noise channel 0; ``sample`` fills it from the seed)."""
        seeds = check_seeds(list(seeds))
        _, maps = parse_conditioning(conditioning, len(seeds), self.layout, self.config.resolution)
        if maps is not None:
            return maps
        size = self.config.resolution
        built = [map_from_params(p, size, self.layout) for p in self.resolve_conditioning(seeds, conditioning)]
        return np.stack(built) if built else np.zeros((0, size, size, self.layout.channels), np.float32)

    def resolve_options(self, options: SamplerOptions | None) -> int:
        """The batch size; refuses options a Pix2Pix generator cannot honour."""
        options = options or SamplerOptions()
        options.validate()
        if options.sampler not in ("", *SAMPLERS):
            raise InvalidArgument(f"dermgan has no sampler {options.sampler!r}", field="sampler",
                                  hint="use pix2pix (or leave it empty)")
        for field, neutral in (("steps", 0), ("eta", 0.0), ("truncation_psi", 1.0)):
            if getattr(options, field) != neutral:
                raise InvalidArgument(f"{field} does not apply to dermgan (one forward pass per image)", field=field)
        return options.batch_size or self.config.sample_batch_size

    def sample(self, seeds: list[int], options: SamplerOptions | None = None,
               conditioning: dict[str, Any] | list[dict[str, Any]] | None = None) -> np.ndarray:
        self._require_built()
        batch_size = self.resolve_options(options)
        seeds = check_seeds(list(seeds))
        maps = torch.from_numpy(self.condition_maps(seeds, conditioning)).permute(0, 3, 1, 2)
        batches = []
        for start in range(0, len(seeds), batch_size):
            chunk = seeds[start:start + batch_size]
            # One CPU generator per image: its noise channel, then its dropout masks, from its seed alone.
            generators = [torch.Generator("cpu").manual_seed(seed) for seed in chunk]
            noise = torch.stack([torch.randn(self.resolution, self.resolution, generator=g) for g in generators])
            batch = self._with_noise(maps[start:start + len(chunk)], noise).to(self.device)
            if self.on_cuda:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), self._autocast():
                images = self.generator(batch, generators if self.config.sample_dropout else None)
            batches.append(images_to_uint8(images.float()))
        size = self.config.resolution
        return np.concatenate(batches) if batches else np.zeros((0, size, size, 3), np.uint8)

    # -- export -------------------------------------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path) -> None:
        """Weights (safetensors), the condition distribution and the config: loadable as ``init_from``."""
        self._require_built()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.generator.state_dict().items()},
                  folder / "generator.safetensors")
        if self.discriminator is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.discriminator.state_dict().items()},
                      folder / "discriminator.safetensors")
        if self.conditions is not None:
            records = {"classes": list(self.conditions.classes), "labels": self.conditions.labels.tolist(),
                       "values": self.conditions.values.tolist()}
            (folder / "conditions.json").write_text(json.dumps(records))
        (folder / "skingenbench_config.json").write_text(self.config_json())
