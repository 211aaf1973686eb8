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

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.generation.core.backend import (
    CONFIG_FILE,
    BuiltPart,
    Conditioning,
    GeneratorBackend,
    RealExample,
    SamplerOptions,
    TrainingItem,
    TrainingState,
    check_seeds,
    derived_seed,
    images_to_uint8,
    state_entry,
)
from skingenbench.services.generation.core.dermgan import networks
from skingenbench.services.generation.core.dermgan.conditioning import (
    ConditionDistribution,
    ConditionRecord,
    parse_conditioning,
    resolve_request,
)
from skingenbench.services.generation.core.dermgan.config import (
    MODEL_FIELDS,
    PROFILES,
    SAMPLERS,
    TRAINING_FIELDS,
    DermGANConfig,
)
from skingenbench.services.generation.core.dermgan.losses import discriminator_loss, generator_loss
from skingenbench.services.generation.core.dermgan.semantic_map import (
    MapParams,
    map_from_mask,
    map_from_params,
)
from skingenbench.services.generation.core.registration import register_generator

STATE_FORMAT = "skingenbench.dermgan/1"
GENERATOR_WEIGHTS, DISCRIMINATOR_WEIGHTS, CONDITIONS_FILE = (
    "generator.safetensors",
    "discriminator.safetensors",
    "conditions.json",
)


@register_generator(
    profiles=PROFILES,
    conditional="true",
    default_sampler="pix2pix",
    description="DermGAN-style conditional Pix2Pix (Ghorbani et al. 2019; Isola et al. 2017): lesions of a chosen "
    "class, size, centre and skin tone (ITA) from semantic maps.",
)
class DermGANBackend(GeneratorBackend):
    name = "dermgan"
    title = "DermGAN"
    config_class = DermGANConfig
    state_format = STATE_FORMAT
    conditional = True
    samplers = SAMPLERS
    inapplicable_options = ("steps", "eta", "truncation_psi")  # one forward pass per image
    model_fields = MODEL_FIELDS
    training_fields = TRAINING_FIELDS

    # What ``build`` makes: the generator always, the critic, optimisers and training RNG for training only.
    generator = BuiltPart[networks.UNetGenerator]()
    discriminator = BuiltPart[networks.PatchDiscriminator]()
    optimizer_g = BuiltPart[torch.optim.Adam]()
    optimizer_d = BuiltPart[torch.optim.Adam]()
    train_rng = BuiltPart[torch.Generator]()

    def __init__(self, config: DermGANConfig, device: str = "") -> None:
        super().__init__(config, device)
        self.config: DermGANConfig = config
        self.layout = config.layout
        self.conditions: ConditionDistribution | None = None

    # -- life cycle ---------------------------------------------------------------------------------------------
    def _build(self, seed: int, total_steps: int, init_from: str | None) -> None:
        config = self.config
        with self.initialisation_rng(seed):
            generator = networks.UNetGenerator(
                self.layout.channels,
                3,
                config.generator_width,
                config.generator_max_width,
                config.generator_levels,
                config.dropout,
                config.dropout_blocks,
            )
            networks.init_pix2pix_weights(generator)
            discriminator = None
            if total_steps > 0:  # sampling needs no critic
                discriminator = networks.PatchDiscriminator(
                    self.layout.channels - int(config.noise_channel) + 3,
                    config.discriminator_width,
                    config.discriminator_layers,
                )
                networks.init_pix2pix_weights(discriminator)
        if init_from:
            self._load_pretrained(init_from, generator, discriminator)
        self.generator = self._placed(generator)
        self.discriminator = self._placed(discriminator) if discriminator else None
        self.optimizer_g = self.optimizer_d = self.train_rng = None
        if total_steps == 0:
            self.generator.eval().requires_grad_(False)
        else:
            betas = (config.adam_beta1, config.adam_beta2)
            self.optimizer_g = torch.optim.Adam(
                self.generator.parameters(), lr=config.learning_rate, betas=betas
            )
            self.optimizer_d = torch.optim.Adam(
                self.discriminator.parameters(), lr=config.learning_rate, betas=betas
            )
            self.train_rng = torch.Generator("cpu").manual_seed(derived_seed(seed, 1))

    def set_condition_distribution(
        self, distribution: ConditionDistribution | Sequence[ConditionRecord]
    ) -> None:
        """The training items' (class, area, centre, ITA) distribution that sampling draws missing parameters from."""
        if not isinstance(distribution, ConditionDistribution):
            distribution = ConditionDistribution(list(distribution), self.config.classes)
        if distribution.classes != self.config.classes:
            raise InvalidArgument(
                f"distribution over classes {distribution.classes}, model over {self.config.classes}",
                field="classes",
            )
        self.conditions = distribution

    def training_set(self, examples: Iterable[RealExample]) -> tuple[list[TrainingItem], int]:
        """(dataset for ``training.train``, items skipped) from (image, lesion mask, ITA, class) of real items.

        Images pass through unchanged (the loop resizes them); maps are built at the training resolution.
        Items without a segmented lesion or a skin tone are skipped. Sets the condition distribution.
        """
        dataset: list[TrainingItem] = []
        records, skipped = [], 0
        for image, mask, ita, label in examples:
            if label not in self.config.classes:
                raise InvalidArgument(
                    f"class {label!r} is not one of this model's {self.config.classes}", field="label"
                )
            if mask is None or ita is None:  # no lesion segmented, or no skin tone measured
                skipped += 1
                continue
            try:
                semantic = map_from_mask(mask, ita, label, self.config.resolution, self.layout)
            except InvalidArgument:
                skipped += 1
                continue
            dataset.append((image, self.layout.class_index(label), semantic))
            records.append(ConditionRecord.from_mask(mask, float(ita), label, self.config.resolution))
        if not dataset:
            raise InvalidArgument(
                f"none of the {skipped} items has both a lesion mask and a skin tone",
                field="dataset",
                hint="preprocess with lesion segmentation and skin tone on",
            )
        self.set_condition_distribution(records)
        return dataset, skipped

    def _load_pretrained(
        self, folder: str, generator: torch.nn.Module, discriminator: torch.nn.Module | None
    ) -> None:
        """A folder written by ``save_pretrained`` (transfer learning); nothing is downloaded."""
        root = Path(folder)
        if not (root / GENERATOR_WEIGHTS).is_file() or self.check_pretrained_folder(root) is None:
            raise InvalidArgument(
                f"init_from {folder!r} is not a DermGAN folder ({GENERATOR_WEIGHTS} and {CONFIG_FILE})",
                field="init_from",
                hint="write one with DermGANBackend.save_pretrained",
            )
        generator.load_state_dict(load_file(root / GENERATOR_WEIGHTS))
        if discriminator is not None and (root / DISCRIMINATOR_WEIGHTS).is_file():
            discriminator.load_state_dict(load_file(root / DISCRIMINATOR_WEIGHTS))
        if self.conditions is None and (root / CONDITIONS_FILE).is_file():  # training_set's own comes first
            saved_conditions = json.loads((root / CONDITIONS_FILE).read_text())
            self.conditions = ConditionDistribution.from_state(
                {
                    "classes": saved_conditions["classes"],
                    "labels": torch.tensor(saved_conditions["labels"]),
                    "values": torch.tensor(saved_conditions["values"], dtype=torch.float64),
                }
            )

    def _save_weights(self, folder: Path) -> None:
        """Generator and critic weights (safetensors) and the condition distribution that sampling draws from."""
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.generator.state_dict().items()},
            folder / GENERATOR_WEIGHTS,
        )
        if self.trainable:  # the critic exists
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in self.discriminator.state_dict().items()},
                folder / DISCRIMINATOR_WEIGHTS,
            )
        if self.conditions is not None:
            records = {
                "classes": list(self.conditions.classes),
                "labels": self.conditions.labels.tolist(),
                "values": self.conditions.values.tolist(),
            }
            (folder / CONDITIONS_FILE).write_text(json.dumps(records))

    # -- training -------------------------------------------------------------------------------------------------
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
        keep = maps[:, : self.layout.noise_index] if self.layout.noise_index is not None else maps
        return torch.cat([keep, images], dim=1)

    def _check_conditions(self, images: torch.Tensor, conditions: torch.Tensor | None) -> None:
        size, channels = self.config.resolution, self.layout.channels
        if conditions is None:
            raise InvalidArgument(
                "dermgan is conditional: every training image needs its semantic map",
                field="conditions",
                hint="build the data set with DermGANBackend.training_set",
            )
        if tuple(conditions.shape) != (images.shape[0], channels, size, size):
            raise InvalidArgument(
                f"conditions must be [N, {channels}, {size}, {size}], got {list(conditions.shape)}",
                field="conditions",
            )

    def _train_step(
        self, images: torch.Tensor, labels: torch.Tensor | None, conditions: torch.Tensor | None
    ) -> dict[str, float]:
        # ``labels`` are redundant with the map's class channels and unused.
        assert conditions is not None  # _check_conditions refused a batch without maps
        size, memory_format = self.config.resolution, self.memory_format
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
        loss_g, parts = generator_loss(
            fooled_logits,
            fake,
            real,
            lesion,
            self.config.lambda_l1,
            self.config.lesion_l1_weight,
            self.config.gan_mode,
        )
        self.optimizer_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizer_g.step()

        metrics = {
            "loss": loss_g.item(),
            "loss_d": loss_d.item(),
            "lr": learning_rate,
            **{name: value.item() for name, value in parts.items()},
            "d_real_logit": real_logits.mean().item(),
            "d_fake_logit": fake_logits.mean().item(),
        }
        if not all(math.isfinite(value) for value in metrics.values()):
            raise FailedPrecondition(
                f"DermGAN losses are not finite at step {self._step}: {metrics}",
                hint="lower learning_rate or use mixed_precision='no'",
            )
        return metrics

    # -- checkpoints ------------------------------------------------------------------------------------------------
    def _training_state(self) -> TrainingState:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "optimizer_g": self.optimizer_g.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
            "train_rng": self.train_rng.get_state(),
            "conditions": self.conditions.to_state() if self.conditions is not None else None,
        }

    def _load_state(self, state: TrainingState) -> None:
        self.generator.load_state_dict(state_entry(state, "generator", dict))
        if self.trainable:
            self.discriminator.load_state_dict(state_entry(state, "discriminator", dict))
            self.optimizer_g.load_state_dict(state_entry(state, "optimizer_g", dict))
            self.optimizer_d.load_state_dict(state_entry(state, "optimizer_d", dict))
            self.train_rng.set_state(state_entry(state, "train_rng", torch.Tensor).cpu())
        conditions = state_entry(state, "conditions", dict) if state.get("conditions") is not None else None
        self.conditions = ConditionDistribution.from_state(conditions) if conditions is not None else None

    # -- sampling -----------------------------------------------------------------------------------------------------
    def resolve_conditioning(
        self, seeds: list[int], conditioning: Conditioning = None
    ) -> list[MapParams | None]:
        """The map parameters image i is drawn with (None for explicit maps); a pure function of seeds[i]
        and its request, so a manifest can record them and a later call rebuilds the same map."""
        seeds = check_seeds(list(seeds))
        requests, maps = parse_conditioning(conditioning, len(seeds), self.layout, self.config.resolution)
        if maps is not None:
            return [None] * len(seeds)
        return [*self._drawn_params(seeds, requests)]

    def _drawn_params(self, seeds: list[int], requests: list[dict[str, object]]) -> list[MapParams]:
        return [
            resolve_request(seed, request, self.conditions)
            for seed, request in zip(seeds, requests, strict=True)
        ]

    def condition_maps(self, seeds: list[int], conditioning: Conditioning = None) -> np.ndarray:
        """Semantic maps [N, R, R, C] for the seeds (noise channel 0; ``sample`` fills it from the seed)."""
        seeds = check_seeds(list(seeds))
        requests, maps = parse_conditioning(conditioning, len(seeds), self.layout, self.config.resolution)
        if maps is not None:
            return maps
        size = self.config.resolution
        built = [map_from_params(p, size, self.layout) for p in self._drawn_params(seeds, requests)]
        return np.stack(built) if built else np.zeros((0, size, size, self.layout.channels), np.float32)

    def _sampling_inputs(self, seeds: list[int], conditioning: Conditioning) -> torch.Tensor:
        """The semantic maps [N, C, R, R]: from parameters, per-image parameters, explicit maps, or the training
        distribution for what a request leaves out."""
        return torch.from_numpy(self.condition_maps(seeds, conditioning)).permute(0, 3, 1, 2)

    def _sample_batch(
        self, seeds: list[int], options: SamplerOptions, inputs: torch.Tensor | None
    ) -> np.ndarray:
        assert inputs is not None  # _sampling_inputs always gives the maps
        # One CPU generator per image: its noise channel, then its dropout masks, from its seed alone.
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        noise = torch.stack([torch.randn(self.resolution, self.resolution, generator=g) for g in generators])
        batch = self._with_noise(inputs, noise).to(self.device).contiguous(memory_format=self.memory_format)
        with torch.inference_mode(), self._autocast():
            images = self.generator(batch, generators if self.config.sample_dropout else None)
        return images_to_uint8(images.float())
