"""The contract every generator implements: build, train one step, checkpoint, sample by seed, export.

One interface fits the three families the benchmark compares:

- a diffusion model (DDPM): ``train_step`` is one denoising-loss update; ``sample`` runs a sampler
  (``ddpm`` full chain, ``ddim`` or ``dpm_solver``) for ``steps`` (``eta``: DDIM's);
- an unconditional GAN (StyleGAN2-ADA): ``train_step`` is one generator + discriminator round with its
  augmentation state inside ``state()``; ``sample`` maps seeds to latents with ``truncation_psi``;
- a conditional GAN (DermGAN-style Pix2Pix): ``conditional`` is true, ``train_step`` receives the
  semantic maps as ``conditions`` and ``sample`` receives them in ``conditioning``.

``GeneratorBackend`` implements the life cycle once, as template methods in the manner of diffusers'
``ModelMixin``/``ConfigMixin``: ``build``, ``train_step``, ``state``, ``load_state``, ``sample``,
``resolve_options`` and ``save_pretrained`` do the checks every backend needs (seeds, step budget, image
shapes, the checkpoint header and its config check, empty batches, defaults of the sampler options) and
call a backend's hooks (``_build``, ``_train_step``, ``_training_state``, ``_load_state``,
``_sample_batch``, ``_save_weights``, ...) for what is its own. A backend declares its config class, its
``model_fields`` (what the saved weights mean: they must match to load them, as a checkpoint or as a
transfer-learning init) and its ``training_fields`` (they must also match to resume training).

The generic loop (``training.py``) owns data order, augmentation, progress and checkpoint cadence; a
backend owns its networks, optimisers, EMA and noise. Everything a backend needs to continue bit-exactly
after a restart is in ``state()``: a nested dict of tensors and JSON scalars, which
``skingenbench.services.core.checkpoint.state_to_bytes`` stores without pickle (DESIGN.md, rule 7).

Over 400 lines on purpose: it is the whole generator contract — the template methods, the hooks each
backend writes, the typed accessors of lazily built parts and the checks every backend shares — kept
in one module so the life cycle (build, train, checkpoint, resume, sample, export) reads in one place.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Generic, TypeVar, overload

import numpy as np
import torch
from skingenbench.services.core.device import device_type, mixed_precision_path, select_device
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.generation.core.generator_config import (
    CONFIG_FILE,
    ConfigDocument,
    GeneratorConfig,
    JSONObject,
    JSONValue,
    StepsOrEpochsConfig,
    read_config_document,
)
from skingenbench.services.generation.core.sampler_options import SamplerOptions, check_seeds

# A checkpoint state (``state()``): nested dicts and lists whose leaves are tensors and JSON scalars, what
# ``core.checkpoint.state_to_bytes`` stores. A backend reads its own entries back with ``state_entry``.
StateValue = (
    torch.Tensor | str | int | float | bool | Sequence["StateValue"] | Mapping[str, "StateValue"] | None
)
TrainingState = dict[str, StateValue]

# What ``sample`` conditions images on, as a request carries it: None (or empty) for an unconditional model; a dict
# of named values, each shared by all images or one per image (a sequence, array or tensor of ``len(seeds)``); or
# one dict per image. Each backend checks the keys and values it understands (``_sampling_inputs``).
Conditioning = Mapping[str, object] | Sequence[Mapping[str, object]] | None

# A real item for ``training_set``: (RGB image uint8 [H, W, 3], its lesion mask [H, W] or None, its ITA skin tone
# in degrees or None, its class name).
RealExample = tuple[np.ndarray, np.ndarray | None, float | None, str]
# An item of the data set ``training.train`` reads: (image, label) or (image, label, condition map [H, W, C]); the
# image is anything ``training.to_training_tensor`` takes, the label a class index (or a name, which it ignores).
TrainingItem = tuple[object, ...]

PartT = TypeVar("PartT")
EntryT = TypeVar("EntryT")
ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


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


def as_json(value: Mapping[str, object]) -> JSONObject:
    """A dict as JSON would return it (tuples to lists), so a config and its reloaded copy compare equal."""
    document: JSONObject = json.loads(json.dumps(value))
    return document


def derived_seed(seed: int, stream: int) -> int:
    """An independent 63-bit seed per purpose (init, training noise, ...) from one user seed."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0] >> 1)


def cpu_snapshot(value: StateValue) -> StateValue:
    """Deep copy of a nested state with every tensor copied to the CPU (a checkpoint, not live views)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: cpu_snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [cpu_snapshot(v) for v in value]
    return value


# Mixed precision on CUDA, where it pays; the CPU computes in fp32 unless asked to take the same path
# (``core.device.CPU_AUTOCAST_ENV``), and then in bf16 whatever the config says: CPU autocast is made for bf16, and
# fp16 there would need a loss scaler the CUDA path does not share.
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
_NEUTRAL_OPTIONS = SamplerOptions()
_OPTION_SCOPE = {
    "steps": "denoising steps are for diffusion samplers",
    "eta": "eta is DDIM's stochasticity",
    "truncation_psi": "truncation is for a GAN's latent space",
}


def state_entry(state: TrainingState, key: str, kind: type[EntryT]) -> EntryT:
    """``state[key]``, checked to be the ``kind`` it was saved as (a module's ``dict``, a ``torch.Tensor``, an
    ``int``); FAILED_PRECONDITION naming the entry for a checkpoint that lacks it or holds something else."""
    value = state.get(key)
    if not isinstance(value, kind):
        raise FailedPrecondition(
            f"checkpoint entry {key!r} is {type(value).__name__}, expected {kind.__name__}",
            hint="resume from a checkpoint this backend wrote",
        )
    return value


class BuiltPart(Generic[PartT]):
    """A part of a backend that ``build`` makes (a network, an optimiser, an RNG stream), declared on the backend
    class (``G = BuiltPart[Generator]()``) and assigned by ``_build``. Reading it while it is unset raises
    FAILED_PRECONDITION saying what to do — before ``build()``, or a training part of a backend built for sampling
    only — so callers get the part itself, never None. Assigning None unsets it (``_build`` starting over)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> BuiltPart[PartT]: ...
    @overload
    def __get__(self, instance: GeneratorBackend, owner: type) -> PartT: ...
    def __get__(self, instance: GeneratorBackend | None, owner: type) -> BuiltPart[PartT] | PartT:
        if instance is None:
            return self
        value: PartT | None = instance.__dict__.get(self.name)
        if value is None:
            raise instance.missing_part(self.name)
        return value

    def __set__(self, instance: GeneratorBackend, value: PartT | None) -> None:
        instance.__dict__[self.name] = value


class GeneratorBackend(abc.ABC):
    """A generative model behind one small interface (see the module docstring).

    Life cycle: ``backend = Cls(config, device)`` (or ``Cls.from_config(dict)``) -> ``build(seed, total_steps=...)``
    -> optionally ``load_state(checkpoint)`` -> ``train_step`` ... / ``sample`` -> ``save_pretrained(folder)``,
    which ``Cls.from_pretrained(folder)`` reloads. ``total_steps=0`` builds for sampling only: no optimiser
    state is allocated, and ``train_step``/``state`` refuse.
    """

    name: ClassVar[str]  # the registry name
    title: ClassVar[str]  # the name people write, for messages ("StyleGAN2-ADA")
    config_class: ClassVar[type[GeneratorConfig]]
    state_format: ClassVar[str]  # the ``format`` of ``state()``; load_state refuses any other
    conditional: ClassVar[bool] = (
        False  # True: needs ``conditions`` in training and ``conditioning`` to sample
    )
    samplers: ClassVar[tuple[str, ...]] = ()
    # SamplerOptions fields this backend has no use for: they must keep their neutral value.
    inapplicable_options: ClassVar[tuple[str, ...]] = ()
    # Config fields that change what the saved weights mean: weights made under other values are refused as a
    # checkpoint, for sampling and as a transfer-learning init (``check_init_config``).
    model_fields: ClassVar[tuple[str, ...]] = ()
    # Config fields that change how training continues: a checkpoint resumes training only when they match too.
    # The other fields (sampling defaults, checkpoint cadence, training length) may differ.
    training_fields: ClassVar[tuple[str, ...]] = ()
    # Whether a resumed run must have the checkpoint's total steps (a learning-rate schedule planned over them).
    schedule_spans_run: ClassVar[bool] = True

    def __init__(self, config: GeneratorConfig, device: str = "") -> None:
        if not isinstance(config, self.config_class):
            raise InvalidArgument(
                f"{self.name} takes a {self.config_class.__name__}, got {type(config).__name__}",
                field="config",
            )
        config.validate()
        self.config = config
        self.device = select_device(device)
        self.on_cuda = torch.device(self.device).type == "cuda"
        # The accelerator path (autocast per the config, channels_last): CUDA, or the CPU when asked to take it.
        self.mixed_precision_path = mixed_precision_path(self.device)
        dtype = _AUTOCAST_DTYPES.get(getattr(config, "mixed_precision", "no"))
        if dtype is not None and not self.on_cuda:
            dtype = torch.bfloat16
        self.autocast_dtype = dtype if self.mixed_precision_path else None
        self.built = False
        self._seed = self._step = self._planned_steps = 0

    @classmethod
    def from_config(
        cls, config: GeneratorConfig | Mapping[str, JSONValue], device: str = ""
    ) -> GeneratorBackend:
        """An unbuilt backend from its config or a config dict (a stored document's ``config``; unknown keys refused)."""
        if isinstance(config, Mapping):
            return cls(cls.config_class.from_dict(config), device)
        return cls(config, device)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "") -> GeneratorBackend:
        """A sampling backend from a ``save_pretrained`` folder: its config document, then its weights."""
        document = read_config_document(folder, field="folder")
        if document is None:
            raise InvalidArgument(
                f"{folder} has no {CONFIG_FILE}",
                field="folder",
                hint=f"write one with {cls.__name__}.save_pretrained",
            )
        if document["backend"] != cls.name:
            raise InvalidArgument(
                f"{folder} holds a {document['backend']} model, not {cls.name}", field="folder"
            )
        backend = cls.from_config(document["config"], device)
        backend.build(0, init_from=str(folder))  # the seed only initialises networks the weights then replace
        return backend

    # -- what the generic training loop reads (from the config, so backends need not repeat it) ------------
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

    @property
    def trainable(self) -> bool:
        """Built with ``total_steps > 0``: optimisers exist, ``train_step`` and ``state`` work."""
        return self.built and self._planned_steps > 0

    @property
    def memory_format(self) -> torch.memory_format:
        """channels_last on the accelerator path (faster convolutions on CUDA), the default layout elsewhere."""
        return torch.channels_last if self.mixed_precision_path else torch.contiguous_format

    def total_steps_for(self, dataset_size: int) -> int:
        """Training length from the config for a data set of this size: ``train_steps``, else ``train_epochs``
        full passes (``steps_for_epochs``). A backend with another budget (kimg) overrides this."""
        config = self.config
        if not isinstance(config, StepsOrEpochsConfig):
            raise NotImplementedError(f"{self.name} counts its training length in its own way")
        if config.train_steps > 0:
            return config.train_steps
        return steps_for_epochs(config.train_epochs, dataset_size, config.batch_size)

    def training_set(self, examples: Iterable[RealExample]) -> tuple[list[TrainingItem], int]:
        """(dataset for ``training.train``, items skipped) from (image, lesion mask, ITA, label) of real items.

        A backend that learns from images alone keeps (image, label) and reads neither mask nor skin tone (they
        may be None); a conditional backend (DermGAN) builds its condition maps from them.
        """
        return [(image, label) for image, _mask, _ita, label in examples], 0

    # -- life cycle (template methods; the hooks below are each backend's own) -----------------------------
    def build(self, seed: int, *, total_steps: int = 0, init_from: str | None = None) -> None:
        """Create networks (seeded), and for ``total_steps > 0`` optimisers, schedules and EMA.

        ``init_from`` is a local folder of pretrained weights for transfer learning (``save_pretrained``'s, or
        what the backend documents); nothing is downloaded (DESIGN.md, rule 8).
        """
        (seed,) = check_seeds([seed])
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 0:
            raise InvalidArgument(
                f"total_steps must be an integer >= 0, got {total_steps!r}", field="total_steps"
            )
        self.built = False
        self._seed, self._step, self._planned_steps = seed, 0, total_steps
        self._build(seed, total_steps, init_from)
        self.built = True

    def train_step(
        self, images: torch.Tensor, labels: torch.Tensor | None = None, conditions: torch.Tensor | None = None
    ) -> dict[str, float]:
        """One optimiser step on ``images`` [N, 3, R, R] in [-1, 1]; returns scalar metrics (``loss`` ...)."""
        self._require_trainable()
        if self._step >= self._planned_steps:
            raise FailedPrecondition(
                f"training was planned for {self._planned_steps} steps and all have been taken",
                hint="build with a larger total_steps",
            )
        size = self.resolution
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise InvalidArgument(
                f"images must be [N, 3, {size}, {size}], got {list(images.shape)}", field="images"
            )
        self._check_conditions(images, conditions)
        metrics = self._train_step(images, labels, conditions)
        self._step += 1
        return metrics

    def state(self) -> TrainingState:
        """Everything needed to continue training exactly: the header (format, config, seed, step, planned steps)
        and the backend's networks, EMA, optimisers, schedules and RNG, all copied to the CPU."""
        self._require_trainable()
        state: TrainingState = {
            "format": self.state_format,
            "config": as_json(dataclasses.asdict(self.config)),
            "seed": self._seed,
            "step": self._step,
            "planned_steps": self._planned_steps,
            **self._training_state(),
        }
        return {key: cpu_snapshot(value) for key, value in state.items()}

    def load_state(self, state: TrainingState) -> None:
        """Restore ``state()``; FAILED_PRECONDITION for another format or a config whose ``model_fields`` (and, to
        resume training, ``training_fields`` and the planned steps) differ. A sampling-only backend takes the
        sampling weights alone."""
        self._require_built()
        if not isinstance(state, dict) or state.get("format") != self.state_format:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise FailedPrecondition(
                f"not a {self.title} checkpoint (format {found!r}, expected {self.state_format!r})"
            )
        fields = self.model_fields + (self.training_fields if self.trainable else ())
        self.check_config_fields(state_entry(state, "config", dict), fields, "checkpoint")
        if self.trainable and self.schedule_spans_run and state["planned_steps"] != self._planned_steps:
            raise FailedPrecondition(
                f"checkpoint's learning-rate schedule was planned for {state['planned_steps']} "
                f"steps, this run for {self._planned_steps}",
                hint="build with the same total_steps to resume",
            )
        self._load_state(state)
        self._step = state_entry(state, "step", int)

    def resolve_options(self, options: SamplerOptions | None = None) -> SamplerOptions:
        """The options with every default filled in (sampler, steps, batch size, ...), so a manifest records how
        its images were drawn; refuses what this backend cannot honour. ``None``: the config's defaults."""
        options = self._default_options() if options is None else options
        options.validate()
        sampler = options.sampler or self._default_sampler()
        if sampler not in self.samplers:
            raise InvalidArgument(
                f"{self.name} has no sampler {sampler!r}",
                field="sampler",
                hint=f"use {', '.join(self.samplers)} (or leave it empty)",
            )
        for name in self.inapplicable_options:
            if getattr(options, name) != getattr(_NEUTRAL_OPTIONS, name):
                raise InvalidArgument(
                    f"{name} does not apply to {self.name} ({_OPTION_SCOPE[name]})", field=name
                )
        resolved = dataclasses.replace(
            options, sampler=sampler, batch_size=options.batch_size or self.sample_batch_size
        )
        return self._resolve_options(resolved)

    def sample(
        self, seeds: list[int], options: SamplerOptions | None = None, conditioning: Conditioning = None
    ) -> np.ndarray:
        """uint8 images [len(seeds), R, R, 3]; image i depends only on seeds[i], its conditioning, the options
        and the weights (so it is the same in any batch: each image draws its noise from its own seed)."""
        self._require_built()
        options = self.resolve_options(options)
        seeds = check_seeds(list(seeds))
        inputs = self._sampling_inputs(seeds, conditioning)
        size, step = self.resolution, options.batch_size
        batches = [
            self._sample_batch(
                seeds[i : i + step], options, inputs[i : i + step] if inputs is not None else None
            )
            for i in range(0, len(seeds), step)
        ]
        return np.concatenate(batches) if batches else np.zeros((0, size, size, 3), np.uint8)

    def save_pretrained(self, folder: str | Path) -> Path:
        """The sampling weights (safetensors) with this config document beside them (``CONFIG_FILE``): a folder
        that ``from_pretrained`` reloads and ``build(init_from=...)`` starts a transfer-learning run from."""
        self._require_built()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_weights(folder)
        (folder / CONFIG_FILE).write_text(self.config_json())
        return folder

    # -- hooks ----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _build(self, seed: int, total_steps: int, init_from: str | None) -> None:
        """Networks initialised under ``initialisation_rng(seed)`` (or loaded from ``init_from``); for
        ``total_steps > 0`` also the optimisers and the training RNG (``derived_seed(seed, 1)``)."""

    @abc.abstractmethod
    def _train_step(
        self, images: torch.Tensor, labels: torch.Tensor | None, conditions: torch.Tensor | None
    ) -> dict[str, float]:
        """One optimiser step on checked inputs; the template counts the step."""

    @abc.abstractmethod
    def _training_state(self) -> TrainingState:
        """The backend's part of ``state()`` (live tensors are fine: the template copies them)."""

    @abc.abstractmethod
    def _load_state(self, state: TrainingState) -> None:
        """Restore the backend's part of a checked ``state()``: everything when ``trainable``, else the sampling
        weights."""

    @abc.abstractmethod
    def _sample_batch(
        self, seeds: list[int], options: SamplerOptions, inputs: torch.Tensor | None
    ) -> np.ndarray:
        """uint8 [len(seeds), R, R, 3] for one forward batch, ``inputs`` being its rows of ``_sampling_inputs``."""

    @abc.abstractmethod
    def _save_weights(self, folder: Path) -> None:
        """Write the weights ``_build(init_from=folder)`` loads (the template adds the config document)."""

    def _default_sampler(self) -> str:
        return self.samplers[0]

    def _default_options(self) -> SamplerOptions:
        """What ``resolve_options(None)`` starts from."""
        return SamplerOptions()

    def _resolve_options(self, options: SamplerOptions) -> SamplerOptions:
        """Sampler-specific defaults and checks on top of the shared ones."""
        return options

    def _check_conditions(self, images: torch.Tensor, conditions: torch.Tensor | None) -> None:
        if conditions is not None:
            raise InvalidArgument(
                f"{self.name} takes no condition maps (only a conditional generator does)", field="conditions"
            )

    def _sampling_inputs(self, seeds: list[int], conditioning: Conditioning) -> torch.Tensor | None:
        """Per-image inputs of the sampler from ``conditioning`` (rows sliced per batch), or None."""
        if conditioning:
            raise InvalidArgument(
                f"{self.name} is unconditional and takes no conditioning", field="conditioning"
            )
        return None

    # -- shared helpers ---------------------------------------------------------------------------------------
    def config_json(self) -> str:
        """The backend name and its full config as JSON, stored beside weights and checkpoints."""
        return json.dumps({"backend": self.name, "config": dataclasses.asdict(self.config)}, sort_keys=True)

    def check_init_config(self, saved: Mapping[str, JSONValue], what: str = "init_checkpoint model") -> None:
        """FAILED_PRECONDITION unless weights made under the config ``saved`` (a JSON dict) fit this backend's
        networks; called before a transfer job starts, so a mismatch is refused instead of failing the job."""
        self.check_config_fields(saved, self.model_fields, what)

    def check_config_fields(self, saved: Mapping[str, JSONValue], fields: tuple[str, ...], what: str) -> None:
        """FAILED_PRECONDITION naming every field of ``fields`` whose value in ``saved`` differs from this config."""
        current = as_json(dataclasses.asdict(self.config))
        differences = [
            f"{name}: {what} {saved.get(name)!r}, now {current[name]!r}"
            for name in fields
            if saved.get(name) != current[name]
        ]
        if differences:
            raise FailedPrecondition(
                f"{what} was made with a different {self.title} config: " + "; ".join(differences)
            )

    def check_pretrained_folder(self, folder: str | Path) -> ConfigDocument | None:
        """The config of a folder of ours (``CONFIG_FILE``), checked against ``model_fields``; None for a folder
        without one (a foreign export the backend checks its own way)."""
        document = read_config_document(folder)
        if document is not None:
            self.check_config_fields(document["config"], self.model_fields, "init_from folder")
        return document

    @contextlib.contextmanager
    def initialisation_rng(self, seed: int) -> Iterator[None]:
        """Seed the global RNG for network initialisation only, leaving the caller's RNG as it was."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(seed, 0))
            yield

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device_type(self.device), dtype=self.autocast_dtype)

    def _placed(self, module: ModuleT) -> ModuleT:
        """``module`` on the device in the backend's memory format (channels_last on CUDA), moved in place."""
        # torch's stubs type Module.to(memory_format=...) without a device, which Module.to accepts.
        return module.to(self.device, memory_format=self.memory_format)  # type: ignore[call-overload]

    def missing_part(self, name: str) -> FailedPrecondition:
        """The refusal when ``name`` (a ``BuiltPart``) is read while unset."""
        if not self.built:
            return FailedPrecondition(
                f"{self.name} backend used before build(): no {name} yet", hint="call build() first"
            )
        return FailedPrecondition(
            f"this {self.title} backend was built for sampling only and has no {name}",
            hint="build(seed, total_steps=N) with N > 0 to train",
        )

    def _require_built(self) -> None:
        if not self.built:
            raise FailedPrecondition(
                f"{self.name} backend used before build()", hint="call build(seed) first"
            )

    def _require_trainable(self) -> None:
        self._require_built()
        if not self.trainable:
            raise FailedPrecondition(
                f"this {self.title} backend was built for sampling only",
                hint="build(seed, total_steps=N) with N > 0 to train",
            )
