"""The contract every generator implements: build, train one step, checkpoint, sample by seed.

One interface fits the three families the benchmark compares:

- a diffusion model (DDPM): ``train_step`` is one denoising-loss update; ``sample`` runs a sampler
  (``ddpm`` full chain or ``ddim``) for ``steps`` with ``eta``;
- an unconditional GAN (StyleGAN2-ADA): ``train_step`` is one generator + discriminator round with its
  augmentation state inside ``state()``; ``sample`` maps seeds to latents with ``truncation_psi``;
- a conditional GAN (DermGAN-style Pix2Pix): ``conditional`` is true, ``train_step`` receives the
  semantic maps as ``conditions`` and ``sample`` receives them in ``conditioning``.

The generic loop (``training.py``) owns data order, augmentation, progress and checkpoint cadence; a
backend owns its networks, optimisers, EMA and noise. Everything a backend needs to continue bit-exactly
after a restart is in ``state()``: a nested dict of tensors and JSON scalars, which
``skingenbench.services.core.checkpoint.state_to_bytes`` stores without pickle (DESIGN.md, rule 7).
"""

from __future__ import annotations

import abc
import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from skingenbench.services.core.device import select_device
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument

# torch.Generator.manual_seed takes any 64-bit pattern; negative seeds are refused here so that a
# seed in a manifest means the same thing in every tool that reads it.
MAX_SEED = 2**64 - 1


@dataclass(frozen=True)
class SamplerOptions:
    """How to draw images. Zero/empty values mean "the backend's configured default".

    Options that do not apply to a backend (``eta`` for a GAN, ``truncation_psi`` for a diffusion model)
    must stay at their neutral value: a backend refuses them rather than silently ignoring them.
    """

    sampler: str = ""  # diffusion: "ddpm" (full ancestral chain) or "ddim"; GANs: ""
    steps: int = 0  # denoising steps; 0 = backend default
    eta: float = 0.0  # DDIM stochasticity (0 = deterministic DDIM, 1 = DDPM-like noise)
    truncation_psi: float = 1.0  # StyleGAN truncation; 1 = none
    batch_size: int = 0  # images per forward pass; 0 = backend default

    def validate(self) -> None:
        if self.steps < 0:
            raise InvalidArgument(f"steps must be >= 0, got {self.steps}", field="steps")
        if self.batch_size < 0:
            raise InvalidArgument(f"batch_size must be >= 0, got {self.batch_size}", field="batch_size")
        if not 0.0 <= self.eta <= 1.0:
            raise InvalidArgument(f"eta must be in [0, 1], got {self.eta}", field="eta")
        if not math.isfinite(self.truncation_psi):
            raise InvalidArgument(f"truncation_psi must be finite, got {self.truncation_psi}",
                                  field="truncation_psi")


def check_seeds(seeds: list[int]) -> list[int]:
    """Seeds as plain ints in [0, 2**64); a bool, float or out-of-range seed is refused loudly."""
    checked = []
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
            raise InvalidArgument(f"seed {seed!r} is not an integer in [0, 2**64)", field="seeds")
        checked.append(int(seed))
    return checked


def steps_for_epochs(epochs: int, dataset_size: int, batch_size: int) -> int:
    """Optimiser steps for ``epochs`` passes over ``dataset_size`` images.

    The training loop forms only full batches and lets a batch run across an epoch boundary, so an
    epoch is ``dataset_size / batch_size`` steps, possibly fractional: total = ceil(epochs * N / B).
    (diffusers' ``train_unconditional`` counts epochs * ceil(N / B), a short last batch per epoch, so
    it can run up to ``epochs`` steps more on the same data.)
    """
    if dataset_size <= 0:
        raise InvalidArgument("cannot convert epochs to steps for an empty data set", field="dataset_size")
    return math.ceil(epochs * dataset_size / batch_size)


def images_to_uint8(images: torch.Tensor) -> np.ndarray:
    """Model output [N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3] (round to nearest, clamp)."""
    scaled = ((images.detach().float() + 1.0) * 127.5).round().clamp(0, 255)
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def as_json(value: Any) -> Any:
    """Tuples to lists (as JSON would), so a config and its reloaded copy compare equal."""
    return json.loads(json.dumps(value))


def derived_seed(seed: int, stream: int) -> int:
    """An independent 63-bit seed per purpose (init, training noise, ...) from one user seed."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0] >> 1)


def cpu_snapshot(value: Any) -> Any:
    """Deep copy of a nested state with every tensor copied to the CPU (a checkpoint, not live views)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: cpu_snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [cpu_snapshot(v) for v in value]
    return value


class GeneratorBackend(abc.ABC):
    """A generative model behind one small interface (see the module docstring).

    Life cycle: ``backend = Cls(config, device)`` -> ``build(seed, total_steps=...)`` -> optionally
    ``load_state(checkpoint)`` -> ``train_step`` ... / ``sample``. ``total_steps=0`` builds for sampling
    only: no optimiser state is allocated, and ``train_step``/``state`` refuse.
    """

    name: ClassVar[str]
    conditional: ClassVar[bool] = False  # True: needs ``conditions`` in training and ``conditioning`` to sample
    samplers: ClassVar[tuple[str, ...]] = ()
    # Config fields that shape the networks: weights made under other values cannot be loaded.
    model_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any, device: str = "") -> None:
        validate = getattr(config, "validate", None)
        if callable(validate):
            validate()
        self.config = config
        self.device = select_device(device)
        self.built = False
        self._step = 0
        self._planned_steps = 0

    # -- what the generic training loop reads (from the config, so backends need not repeat it) ------
    @property
    def resolution(self) -> int:
        """Side of the square images the model trains on and produces."""
        return self.config.resolution

    @property
    def batch_size(self) -> int:
        """Training images per optimiser step."""
        return self.config.batch_size

    @property
    def hflip_probability(self) -> float:
        """Chance that the loop mirrors a training image (and its condition map) left-right."""
        return getattr(self.config, "hflip_probability", 0.0)

    @property
    def checkpoint_every_steps(self) -> int:
        """Default checkpoint cadence of the training loop; 0 = only at the end and on stop."""
        return getattr(self.config, "checkpoint_every_steps", 0)

    @property
    def sample_batch_size(self) -> int:
        """Images per forward pass when sampling, unless SamplerOptions.batch_size says otherwise."""
        return getattr(self.config, "sample_batch_size", 16)

    @property
    def step(self) -> int:
        """Optimiser steps taken so far (restored by ``load_state``)."""
        return self._step

    @property
    def planned_steps(self) -> int:
        """The ``total_steps`` given to ``build`` (learning-rate schedules are planned for it)."""
        return self._planned_steps

    @abc.abstractmethod
    def total_steps_for(self, dataset_size: int) -> int:
        """Training length from the config (steps, epochs or kimg) for a data set of this size."""

    # -- life cycle ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def build(self, seed: int, *, total_steps: int = 0, init_from: str | None = None) -> None:
        """Create networks (seeded), and for ``total_steps > 0`` optimisers, schedules and EMA.

        ``init_from`` is a local folder of pretrained weights for transfer learning; nothing is
        downloaded (DESIGN.md, rule 8).
        """

    @abc.abstractmethod
    def train_step(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                   conditions: torch.Tensor | None = None) -> dict[str, float]:
        """One optimiser step on ``images`` [N, 3, R, R] in [-1, 1]; returns scalar metrics (``loss`` ...)."""

    @abc.abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything needed to continue training exactly: networks, EMA, optimisers, schedules, step, RNG."""

    @abc.abstractmethod
    def load_state(self, state: dict[str, Any]) -> None:
        """Restore ``state()``; refuses (FailedPrecondition) a state made with an incompatible config."""

    @abc.abstractmethod
    def sample(self, seeds: list[int], options: SamplerOptions | None = None,
               conditioning: dict[str, Any] | None = None) -> np.ndarray:
        """uint8 images [len(seeds), R, R, 3]; image i depends only on seeds[i], the options and weights."""

    # -- shared helpers --------------------------------------------------------------------------------
    def config_json(self) -> str:
        """The backend name and its full config as JSON, stored beside weights and checkpoints."""
        return json.dumps({"backend": self.name, "config": dataclasses.asdict(self.config)}, sort_keys=True)

    def check_init_config(self, saved: dict[str, Any], what: str = "init_checkpoint model") -> None:
        """FAILED_PRECONDITION unless weights made under the config ``saved`` (a JSON dict) fit this backend's
        networks; called before a transfer job starts, so a mismatch is refused instead of failing the job."""
        self.check_config_fields(saved, self.model_fields, what)

    def check_config_fields(self, saved: dict[str, Any], fields: tuple[str, ...], what: str) -> None:
        """FAILED_PRECONDITION naming every field of ``fields`` whose value in ``saved`` differs from this config."""
        current = as_json(dataclasses.asdict(self.config))
        differences = [f"{name}: {what} {saved.get(name)!r}, now {current[name]!r}"
                       for name in fields if saved.get(name) != current[name]]
        if differences:
            raise FailedPrecondition(f"{what} was made with a different {self.name} config: " + "; ".join(differences))

    def _require_built(self) -> None:
        if not self.built:
            raise FailedPrecondition(f"{self.name} backend used before build()", hint="call build(seed) first")
