"""StyleGAN2-ADA backend: our own plain-PyTorch StyleGAN2 with adaptive discriminator augmentation.

Written from the papers — Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"
(StyleGAN2) and Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data" (ADA) —
without NVIDIA's code (non-commercial licence; custom CUDA ops). One ``train_step`` is the four phases of
the papers' loop:

1. G: non-saturating loss on D(augment(G(z))), with style mixing; updates the tracked mean w.
2. G regulariser every ``pl_interval`` steps: path length on half a batch, weight x interval (lazy).
3. D: logistic loss on augmented fakes and reals; D(real) feeds the ADA controller's r_t.
4. D regulariser every ``r1_interval`` steps: R1 at the clean reals, gamma / 2 x interval (lazy).

then the EMA of G (half-life ``ema_kimg`` thousand images, ramped up over the first images:
half-life <= ``ema_rampup`` x images seen) and, every ``ada_interval`` steps, the ADA update of p.

Adam with the papers' betas (0, 0.99). A lazily regularised network takes 1 + 1/k steps per k minibatches,
so its learning rate and betas are rescaled by c = k / (k + 1) (lr x c, beta ** c) to keep the optimiser's
time constants per image (StyleGAN2 appendix B). All training randomness (latents, noise inputs, mixing,
augmentation, path-length images) comes from one ``torch.Generator`` in the checkpoint, so a resumed run
continues bit-exactly on the CPU. Sampling draws each image's latent and noise from a CPU generator seeded
with that image's seed, so an image does not depend on its batch.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.generation.core.backend import (
    GeneratorBackend,
    SamplerOptions,
    as_json,
    check_seeds,
    cpu_snapshot,
    derived_seed,
    images_to_uint8,
)
from skingenbench.services.generation.core.stylegan2.augment import PRESETS, AdaptiveAugment, AugmentPipe
from skingenbench.services.generation.core.stylegan2.discriminator import Discriminator
from skingenbench.services.generation.core.stylegan2.losses import (
    PathLengthRegularizer,
    discriminator_loss,
    generator_loss,
    r1_penalty,
)
from skingenbench.services.generation.core.stylegan2.synthesis import Generator, channels_at

# "stylegan": per-image random noise inputs (the papers' sampling); "stylegan_const": each layer's fixed
# noise buffer, so an image is a function of its latent alone.
SAMPLERS = ("stylegan", "stylegan_const")
NOISE_MODES = ("random", "const")
AUGMENT_MODES = ("ada", "fixed", "none")
MIXED_PRECISION = ("no", "bf16")
STATE_FORMAT = "skingenbench.stylegan2_ada/1"
WEIGHTS_FILE = "stylegan2_ada.safetensors"
CONFIG_FILE = "skingenbench_config.json"


@dataclass(frozen=True)
class StyleGAN2Config:
    """Everything that defines a StyleGAN2-ADA run. Defaults: ADA's ``cfg=auto`` at 256x256 on one GPU."""

    resolution: int = 256  # a power of two
    # 0: unconditional; > 0: G embeds the class into w, D projects onto it (ADA's conditional models; projection
    # discriminator, Miyato & Koyama 2018). Through the generation service it must equal the number of requested
    # classes, class i being the i-th in sorted order (services/generation/training_job.py).
    num_classes: int = 0

    # Generator. cfg=auto below 512 px: 2 mapping layers, fmaps 0.5 -> channel_base 16384, at most 512.
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 2  # 8 is the FFHQ configuration
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float = 0.995
    channel_base: int = 16384
    channel_max: int = 512
    conv_clamp: float = 256.0  # clamp activations to +-256 (reduced-precision guard); 0 disables
    style_mixing_prob: float = 0.9

    # Discriminator (ProGAN's minibatch standard deviation; group min(batch/GPUs, 4) in cfg=auto).
    mbstd_group_size: int = 4
    mbstd_channels: int = 1

    # Optimisation. The training length is a kimg budget: total steps = ceil(train_kimg * 1000 / batch).
    batch_size: int = 32
    learning_rate: float = 0.0025
    adam_beta1: float = 0.0
    adam_beta2: float = 0.99
    adam_epsilon: float = 1e-8
    train_kimg: float = 240.0
    r1_gamma: float = 0.8192  # cfg=auto heuristic 0.0002 * res^2 / minibatch (16 at 256 px, one GPU)
    r1_interval: int = 16
    pl_weight: float = 2.0  # 0 disables path-length regularisation
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    ema_kimg: float = 5.0  # cfg=auto: minibatch * 10 / 32 kimg
    ema_rampup: float = 0.05  # 0: no ramp-up

    # Augmentation. Dataset x-flips (the loop mirrors images) and ADA on everything D sees.
    hflip_probability: float = 0.5
    augment: str = "ada"  # "ada": adaptive p; "fixed": p = augment_p throughout; "none"
    augment_transforms: str = "bgc"
    augment_p: float = 0.0  # initial p (ada) or the constant p (fixed)
    ada_target: float = 0.6  # the ADA paper's default r_t target
    ada_interval: int = 4  # minibatches between p updates
    ada_kimg: float = 500.0  # p can go 0 -> 1 in this many thousand images

    mixed_precision: str = "bf16"  # autocast on CUDA only; the CPU always trains in fp32
    checkpoint_every_steps: int = 250

    # Sampling defaults.
    noise_mode: str = "random"
    default_truncation_psi: float = 1.0  # what a sampling job should pass when the request leaves psi unset
    sample_batch_size: int = 32

    def validate(self) -> None:
        for name, minimum in (("resolution", 4), ("num_classes", 0), ("z_dim", 1), ("w_dim", 1),
                              ("mapping_layers", 1), ("channel_base", 1), ("channel_max", 1),
                              ("mbstd_group_size", 1), ("mbstd_channels", 1), ("batch_size", 1),
                              ("r1_interval", 1), ("pl_interval", 1), ("pl_batch_shrink", 1), ("ada_interval", 1),
                              ("checkpoint_every_steps", 0), ("sample_batch_size", 1)):
            _check_int(self, name, minimum)
        if self.resolution & (self.resolution - 1):
            raise _invalid("resolution", f"must be a power of two, got {self.resolution}")
        for name, low, high in (("mapping_lr_multiplier", 1e-6, 10.0), ("w_avg_beta", 0.0, 1.0),
                                ("conv_clamp", 0.0, math.inf), ("style_mixing_prob", 0.0, 1.0),
                                ("learning_rate", 1e-9, 1.0), ("adam_beta1", 0.0, 0.999),
                                ("adam_beta2", 0.0, 0.99999), ("adam_epsilon", 1e-20, 1.0), ("train_kimg", 1e-6, 1e6),
                                ("r1_gamma", 0.0, 1e6), ("pl_weight", 0.0, 1e6), ("pl_decay", 0.0, 1.0),
                                ("ema_kimg", 0.0, 1e6), ("ema_rampup", 0.0, 1.0), ("hflip_probability", 0.0, 1.0),
                                ("augment_p", 0.0, 1.0), ("ada_target", 0.0, 1.0), ("ada_kimg", 1e-6, 1e6),
                                ("default_truncation_psi", -10.0, 10.0)):
            _check_number(self, name, low, high)
        channels_4x4 = channels_at(4, self.channel_base, self.channel_max)
        if channels_4x4 % self.mbstd_channels:
            raise _invalid("mbstd_channels", f"must divide the {channels_4x4} channels at 4x4, got {self.mbstd_channels}")
        _check_choice(self, "augment", AUGMENT_MODES)
        _check_choice(self, "augment_transforms", tuple(PRESETS))
        _check_choice(self, "mixed_precision", MIXED_PRECISION)
        _check_choice(self, "noise_mode", NOISE_MODES)

    def total_steps(self) -> int:
        return math.ceil(self.train_kimg * 1000 / self.batch_size)


def _invalid(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {message}", field=field)


def _check_int(config: Any, field: str, minimum: int) -> None:
    value = getattr(config, field)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _invalid(field, f"must be an integer >= {minimum}, got {value!r}")


def _check_number(config: Any, field: str, low: float, high: float) -> None:
    value = getattr(config, field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise _invalid(field, f"must be a number in [{low}, {high}], got {value!r}")


def _check_choice(config: Any, field: str, choices: tuple[str, ...]) -> None:
    if getattr(config, field) not in choices:
        raise _invalid(field, f"must be one of {', '.join(choices)}; got {getattr(config, field)!r}")


# The reference study's run: NVIDIA's train.py --cfg=auto at 256x256, --batch=32, --gamma left to the auto
# heuristic, lr 0.0025, --target=0.7, --mirror=1, --kimg=240; sampled with truncation psi = 0.8.
# (The study started from FFHQ-256 weights; those are NVIDIA's pickles and cannot be loaded here.)
PAPER = StyleGAN2Config(ada_target=0.7, default_truncation_psi=0.8)

# Seconds on a CPU: 32x32, 32-dim latents, 8-32 channels, batch 8; the same losses, regularisers and
# ADA, with the controller sped up (ada_kimg 2) so that p visibly moves within a short run.
TINY = StyleGAN2Config(
    resolution=32, z_dim=32, w_dim=32, channel_base=256, channel_max=32, conv_clamp=0.0, batch_size=8,
    learning_rate=0.002, train_kimg=0.4, r1_gamma=0.0256, ema_kimg=0.1, ada_kimg=2.0, mixed_precision="no",
    checkpoint_every_steps=25, sample_batch_size=8)

PROFILES = {"tiny": TINY, "paper": PAPER}

# Fields that change what saved weights mean (always checked on load) and those that change how training
# continues (checked when resuming training). Sampling defaults and the checkpoint cadence may differ.
_MODEL_FIELDS = ("resolution", "num_classes", "z_dim", "w_dim", "mapping_layers", "mapping_lr_multiplier",
                 "channel_base", "channel_max", "mbstd_group_size", "mbstd_channels")
_TRAINING_FIELDS = ("w_avg_beta", "conv_clamp", "style_mixing_prob", "batch_size", "learning_rate", "adam_beta1",
                    "adam_beta2", "adam_epsilon", "r1_gamma", "r1_interval", "pl_weight", "pl_interval",
                    "pl_batch_shrink", "pl_decay", "ema_kimg", "ema_rampup", "hflip_probability", "augment",
                    "augment_transforms", "ada_target", "ada_interval", "ada_kimg")


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class StyleGAN2ADABackend(GeneratorBackend):
    name = "stylegan2_ada"
    model_fields = _MODEL_FIELDS
    conditional = False  # class labels (not condition maps) drive the optional class conditioning
    samplers = SAMPLERS

    def __init__(self, config: StyleGAN2Config, device: str = "") -> None:
        super().__init__(config, device)
        self.config: StyleGAN2Config = config
        self.on_cuda = torch.device(self.device).type == "cuda"
        self.autocast_dtype = torch.bfloat16 if self.on_cuda and config.mixed_precision == "bf16" else None
        self.G: Generator | None = None
        self.D: Discriminator | None = None
        self.G_ema: Generator | None = None
        self.opt_G: torch.optim.Optimizer | None = None
        self.opt_D: torch.optim.Optimizer | None = None
        self.ada: AdaptiveAugment | None = None
        self.path_length: PathLengthRegularizer | None = None
        self.generator: torch.Generator | None = None
        self._seed = self._step = self._nimg = self._planned_steps = 0

    # -- what the training loop reads ------------------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        return self.opt_G is not None

    @property
    def augment_p(self) -> float:
        """The current augmentation probability (0 before training and for sampling-only backends)."""
        return self.ada.p if self.ada is not None else 0.0

    def total_steps_for(self, dataset_size: int) -> int:
        # A kimg budget is independent of the data set's size (ADA trains by images shown, not epochs).
        return self.config.total_steps()

    # -- life cycle ---------------------------------------------------------------------------------------------
    def _new_generator(self) -> Generator:
        c = self.config
        return Generator(z_dim=c.z_dim, w_dim=c.w_dim, num_classes=c.num_classes, mapping_layers=c.mapping_layers,
                         resolution=c.resolution, channel_base=c.channel_base, channel_max=c.channel_max,
                         mapping_lr_multiplier=c.mapping_lr_multiplier, w_avg_beta=c.w_avg_beta,
                         conv_clamp=c.conv_clamp or None)

    def _new_discriminator(self) -> Discriminator:
        c = self.config
        return Discriminator(resolution=c.resolution, channel_base=c.channel_base, channel_max=c.channel_max,
                             num_classes=c.num_classes, mbstd_group_size=c.mbstd_group_size,
                             mbstd_channels=c.mbstd_channels, mapping_layers=c.mapping_layers,
                             conv_clamp=c.conv_clamp or None)

    def build(self, seed: int, *, total_steps: int = 0, init_from: str | None = None) -> None:
        (seed,) = check_seeds([seed])
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 0:
            raise InvalidArgument(f"total_steps must be an integer >= 0, got {total_steps!r}", field="total_steps")
        with torch.random.fork_rng(devices=[]):  # seed only the initialisation, not the caller's RNG
            torch.manual_seed(derived_seed(seed, 0))
            generator = self._new_generator()
            discriminator = self._new_discriminator() if total_steps > 0 else None
        ema = copy.deepcopy(generator).eval().requires_grad_(False)
        if init_from:
            self._load_pretrained(init_from, generator, discriminator, ema)
        memory_format = torch.channels_last if self.on_cuda else torch.contiguous_format
        self.G_ema = ema.to(self.device, memory_format=memory_format)
        self.G = self.D = self.opt_G = self.opt_D = self.ada = self.path_length = self.generator = None
        self._seed, self._step, self._nimg, self._planned_steps = seed, 0, 0, total_steps
        if total_steps > 0:
            self.G = generator.to(self.device, memory_format=memory_format).train()
            self.D = discriminator.to(self.device, memory_format=memory_format).train()
            self._build_training(seed)
        self.built = True

    def _build_training(self, seed: int) -> None:
        c = self.config

        def adam(module: torch.nn.Module, interval: int, regularised: bool) -> torch.optim.Adam:
            ratio = interval / (interval + 1) if regularised else 1.0  # lazy regularisation, see module doc
            return torch.optim.Adam(module.parameters(), lr=c.learning_rate * ratio,
                                    betas=(c.adam_beta1**ratio, c.adam_beta2**ratio), eps=c.adam_epsilon)

        self.opt_G = adam(self.G, c.pl_interval, c.pl_weight > 0)
        self.opt_D = adam(self.D, c.r1_interval, c.r1_gamma > 0)
        pipe = AugmentPipe(c.augment_transforms if c.augment != "none" else "none",
                           p=c.augment_p if c.augment != "none" else 0.0)
        self.ada = AdaptiveAugment(pipe, target=c.ada_target, interval=c.ada_interval, speed_kimg=c.ada_kimg,
                                   adaptive=c.augment == "ada")
        self.path_length = PathLengthRegularizer(c.pl_decay, self.device)
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(derived_seed(seed, 1))

    def _load_pretrained(self, folder: str, generator: Generator, discriminator: Discriminator | None,
                         ema: Generator) -> None:
        """Weights from ``save_pretrained`` (our own safetensors format) for transfer learning."""
        from safetensors.torch import load_file

        root = Path(folder)
        if not (root / WEIGHTS_FILE).is_file() or not (root / CONFIG_FILE).is_file():
            raise InvalidArgument(f"init_from {folder!r} has no {WEIGHTS_FILE} and {CONFIG_FILE}", field="init_from",
                                  hint="make one with StyleGAN2ADABackend.save_pretrained; NVIDIA pickles are not "
                                       "loaded (DESIGN.md rule 7)")
        saved = json.loads((root / CONFIG_FILE).read_text())["config"]
        self.check_config_fields(saved, _MODEL_FIELDS, "init_from folder")
        tensors = load_file(root / WEIGHTS_FILE)

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        ema.load_state_dict(part("G_ema."))
        generator.load_state_dict(part("G.") or part("G_ema."))
        if discriminator is not None and part("D."):
            discriminator.load_state_dict(part("D."))

    def save_pretrained(self, folder: str | Path) -> None:
        """G_ema (and G and D when training) as one safetensors file, with this config beside it."""
        from safetensors.torch import save_file

        self._require_built()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for prefix, module in (("G_ema.", self.G_ema), ("G.", self.G), ("D.", self.D)):
            if module is not None:
                tensors.update({prefix + k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()})
        save_file(tensors, folder / WEIGHTS_FILE)
        (folder / CONFIG_FILE).write_text(self.config_json())

    # -- training -----------------------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)

    def _require_trainable(self) -> None:
        self._require_built()
        if not self.trainable:
            raise FailedPrecondition("this StyleGAN2-ADA backend was built for sampling only",
                                     hint="build(seed, total_steps=N) with N > 0 to train")

    def _labels(self, labels: Any, count: int) -> torch.Tensor | None:
        """Class indices on the device for a conditional model; None (labels ignored) otherwise."""
        if self.config.num_classes == 0:
            return None
        if labels is None:
            raise InvalidArgument(f"this model is conditional on {self.config.num_classes} classes: give labels",
                                  field="labels")
        labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).reshape(-1)
        if labels.numel() == 1 and count > 1:
            labels = labels.expand(count)
        if labels.numel() != count or labels.is_floating_point() or labels.dtype == torch.bool:
            raise InvalidArgument(f"labels must be {count} integers, got {labels.tolist()}", field="labels")
        if bool((labels < 0).any()) or bool((labels >= self.config.num_classes).any()):
            raise InvalidArgument(f"labels must lie in [0, {self.config.num_classes}), got {labels.tolist()}",
                                  field="labels")
        return labels.to(self.device, torch.long)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                   conditions: torch.Tensor | None = None) -> dict[str, float]:
        self._require_trainable()
        c = self.config
        if self._step >= self._planned_steps:
            raise FailedPrecondition(f"the run was planned for {self._planned_steps} steps and all have been taken",
                                     hint="build with a larger total_steps")
        if conditions is not None:
            raise InvalidArgument("stylegan2_ada takes class labels, not condition maps", field="conditions")
        size = c.resolution
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise InvalidArgument(f"images must be [N, 3, {size}, {size}], got {list(images.shape)}", field="images")
        real = images.to(self.device, torch.float32, non_blocking=True)
        if self.on_cuda:
            real = real.contiguous(memory_format=torch.channels_last)
        batch, step, rng = real.shape[0], self._step, self.generator
        cls = self._labels(labels, batch)
        augment = self.ada.pipe
        metrics: dict[str, float] = {}

        def latents(count: int) -> torch.Tensor:
            return torch.randn([count, c.z_dim], generator=rng, device=self.device)

        # 1. G main: make D call augmented fakes real.
        self.G.requires_grad_(True)
        self.D.requires_grad_(False)
        with self._autocast():
            fake = self.G(latents(batch), cls, mixing_prob=c.style_mixing_prob, generator=rng, update_w_avg=True)
            fake_logits = self.D(augment(fake, rng), cls)
        loss_g = generator_loss(fake_logits)
        self._optimise(self.opt_G, loss_g)
        metrics["loss_G"] = self._finite(loss_g, "generator loss")

        # 2. Lazy path-length regularisation on a smaller batch.
        if c.pl_weight > 0 and step % c.pl_interval == 0:
            count = max(1, batch // c.pl_batch_shrink)
            with self._autocast():
                ws = self.G.styles(latents(count), cls[:count] if cls is not None else None,
                                   mixing_prob=c.style_mixing_prob, generator=rng)
                generated = self.G.synthesis(ws, generator=rng)
            penalty = self.path_length(generated, ws, rng)
            self._optimise(self.opt_G, penalty.mean() * (c.pl_weight * c.pl_interval))
            metrics["pl_penalty"] = self._finite(penalty.mean(), "path-length penalty")
            metrics["pl_mean"] = float(self.path_length.mean)

        # 3. D main: logistic loss on augmented fakes and reals; D(real) drives the ADA heuristic.
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        with self._autocast():
            with torch.no_grad():
                fake = self.G(latents(batch), cls, mixing_prob=c.style_mixing_prob, generator=rng)
            fake_logits = self.D(augment(fake, rng), cls)
            real_logits = self.D(augment(real, rng), cls)
        loss_d = discriminator_loss(real_logits, fake_logits)
        self._optimise(self.opt_D, loss_d)
        metrics["loss_D"] = metrics["loss"] = self._finite(loss_d, "discriminator loss")
        metrics["real_score"] = float(real_logits.detach().float().mean())
        metrics["fake_score"] = float(fake_logits.detach().float().mean())
        self.ada.observe(real_logits)

        # 4. Lazy R1 at the clean reals (gradients flow back through the augmentation).
        if c.r1_gamma > 0 and step % c.r1_interval == 0:
            reals = real.detach().requires_grad_(True)
            with self._autocast():
                logits = self.D(augment(reals, rng), cls)
            penalty = r1_penalty(logits, reals)
            self._optimise(self.opt_D, penalty.mean() * (c.r1_gamma / 2 * c.r1_interval))
            metrics["r1_penalty"] = self._finite(penalty.mean(), "R1 penalty")

        self._nimg += batch
        metrics["ema_beta"] = self._update_ema(batch)
        self._step += 1
        metrics["augment_p"] = self.ada.p
        if not math.isnan(self.ada.last_rt):
            metrics["ada_rt"] = self.ada.last_rt
        return metrics

    @staticmethod
    def _optimise(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def _finite(self, value: torch.Tensor, what: str) -> float:
        number = float(value.detach())
        if not math.isfinite(number):
            raise FailedPrecondition(f"StyleGAN2-ADA {what} is {number} at step {self._step}; training diverged",
                                     hint="lower learning_rate, raise r1_gamma, or use mixed_precision='no'")
        return number

    @torch.no_grad()
    def _update_ema(self, batch: int) -> float:
        """G_ema <- beta G_ema + (1 - beta) G with beta = 0.5 ** (batch / half-life in images)."""
        half_life = self.config.ema_kimg * 1000
        if self.config.ema_rampup > 0:
            half_life = min(half_life, self._nimg * self.config.ema_rampup)
        beta = 0.5 ** (batch / max(half_life, 1e-8))
        for shadow, param in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            shadow.copy_(param.detach().lerp(shadow, beta))
        for shadow, buffer in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            shadow.copy_(buffer)  # w_avg and the constant noise follow G
        return beta

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        self._require_trainable()
        return cpu_snapshot({
            "format": STATE_FORMAT,
            "config": as_json(dataclasses.asdict(self.config)),
            "seed": self._seed,
            "step": self._step,
            "nimg": self._nimg,
            "planned_steps": self._planned_steps,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "ada": self.ada.state_dict(),
            "pl_mean": self.path_length.mean,
            "rng": self.generator.get_state(),
            "rng_device": torch.device(self.device).type,
        })

    def load_state(self, state: dict[str, Any]) -> None:
        self._require_built()
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise FailedPrecondition(f"not a StyleGAN2-ADA checkpoint (format {found!r}, expected {STATE_FORMAT!r})")
        fields = _MODEL_FIELDS + (_TRAINING_FIELDS if self.trainable else ())
        self.check_config_fields(state["config"], fields, "checkpoint")
        self.G_ema.load_state_dict(state["G_ema"])
        if self.trainable:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            self.opt_G.load_state_dict(state["opt_G"])
            self.opt_D.load_state_dict(state["opt_D"])
            self.ada.load_state_dict(state["ada"])
            self.path_length.mean = state["pl_mean"].to(self.device, torch.float32)
            if state["rng_device"] == torch.device(self.device).type:
                self.generator.set_state(state["rng"].cpu())
            else:
                # Generator states do not port between CPU and CUDA: continue with a fresh stream derived
                # from (seed, step) — still deterministic, not bit-exact.
                self.generator.manual_seed(derived_seed(int(state["seed"]), 2 + int(state["step"])))
        self._step, self._nimg = int(state["step"]), int(state["nimg"])


    # -- sampling ------------------------------------------------------------------------------------------------
    def resolve_options(self, options: SamplerOptions | None) -> SamplerOptions:
        """The options with defaults filled in (sampler from ``noise_mode``, batch size), so a manifest records
        how its images were drawn; refuses what a GAN cannot honour. ``None`` means the config's defaults,
        ``default_truncation_psi`` included; otherwise ``truncation_psi`` is taken literally."""
        if options is None:
            options = SamplerOptions(truncation_psi=self.config.default_truncation_psi)
        options.validate()
        sampler = options.sampler or ("stylegan_const" if self.config.noise_mode == "const" else "stylegan")
        if sampler not in SAMPLERS:
            raise InvalidArgument(f"stylegan2_ada has no sampler {sampler!r}", field="sampler",
                                  hint=f"use {', '.join(SAMPLERS)}")
        if options.steps != 0:
            raise InvalidArgument("steps apply to diffusion samplers, not stylegan2_ada", field="steps")
        if options.eta != 0.0:
            raise InvalidArgument("eta applies to DDIM, not stylegan2_ada", field="eta")
        return dataclasses.replace(options, sampler=sampler,
                                   batch_size=options.batch_size or self.config.sample_batch_size)

    def sample(self, seeds: list[int], options: SamplerOptions | None = None,
               conditioning: dict[str, Any] | None = None) -> np.ndarray:
        """Images from G_ema. ``conditioning`` is ``{"class": int or one int per seed}`` for a conditional
        model and must be empty otherwise; a ``"label"`` (the class's name) may ride beside ``"class"``, as the
        generation service sends it so that manifests name the class, and is not looked at: the network knows
        classes only by index (the model record's ``classes`` maps names to indices). ``truncation_psi`` is
        applied literally (0: every image is the mean image, 1: none); ``options=None`` uses the config's
        ``default_truncation_psi``."""
        self._require_built()
        options = self.resolve_options(options)
        noise_mode = "const" if options.sampler == "stylegan_const" else "random"
        psi, batch_size = float(options.truncation_psi), options.batch_size
        seeds = check_seeds(list(seeds))
        conditioning = dict(conditioning or {})
        labels = conditioning.pop("class", None)
        name = conditioning.pop("label", None)
        if name is not None and labels is None:  # a name alone cannot be mapped here: refuse, do not ignore
            raise InvalidArgument(f"stylegan2_ada selects a class by index ('class'), not by name ({name!r})",
                                  field="conditioning",
                                  hint="map the name with the model's sorted classes, as the generation service does")
        if conditioning:
            raise InvalidArgument(f"stylegan2_ada takes only a 'class' conditioning, got {sorted(conditioning)}",
                                  field="conditioning")
        if labels is not None and self.config.num_classes == 0:
            raise InvalidArgument("this model is unconditional and takes no class", field="conditioning")
        cls = self._labels(labels, len(seeds)) if self.config.num_classes else None
        size = self.config.resolution
        batches = [self._synthesise(seeds[i:i + batch_size], cls[i:i + batch_size] if cls is not None else None,
                                    noise_mode, psi) for i in range(0, len(seeds), batch_size)]
        return np.concatenate(batches) if batches else np.zeros((0, size, size, 3), np.uint8)

    def latents(self, seeds: list[int], noise_mode: str = "random") -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """z [n, z_dim] and per-layer noise of each seed, each image from its own seeded CPU generator."""
        zs, noises = [], []
        for seed in check_seeds(seeds):
            generator = torch.Generator("cpu").manual_seed(seed)
            zs.append(torch.randn([1, self.config.z_dim], generator=generator))
            if noise_mode == "random":
                noises.append(self.G_ema.synthesis.draw_noise(1, generator))
        noise = [torch.cat(layer) for layer in zip(*noises, strict=True)] if noises else None
        return torch.cat(zs), noise

    @torch.inference_mode()
    def _synthesise(self, seeds: list[int], cls: torch.Tensor | None, noise_mode: str, psi: float) -> np.ndarray:
        z, noise = self.latents(seeds, noise_mode)
        z = z.to(self.device)
        noise = [n.to(self.device) for n in noise] if noise is not None else None
        with self._autocast():
            images = self.G_ema(z, cls, truncation_psi=psi, noise_mode=noise_mode, noise=noise)
        return images_to_uint8(images)
