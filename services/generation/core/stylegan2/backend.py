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

Over 400 lines on purpose: the training step of StyleGAN2-ADA (G and D phases, lazy R1 and path-length
regularisation, the ADA controller, EMA) is one algorithm whose parts share state; the networks, losses
and augmentation already live in their own modules.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
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
    SamplerOptions,
    TrainingState,
    check_seeds,
    derived_seed,
    images_to_uint8,
    state_entry,
)
from skingenbench.services.generation.core.registration import register_generator
from skingenbench.services.generation.core.stylegan2.augment import AdaptiveAugment, AugmentPipe
from skingenbench.services.generation.core.stylegan2.config import (
    MODEL_FIELDS,
    PROFILES,
    SAMPLERS,
    TRAINING_FIELDS,
    StyleGAN2Config,
)
from skingenbench.services.generation.core.stylegan2.discriminator import Discriminator
from skingenbench.services.generation.core.stylegan2.losses import (
    PathLengthRegularizer,
    discriminator_loss,
    generator_loss,
    r1_penalty,
)
from skingenbench.services.generation.core.stylegan2.synthesis import Generator

STATE_FORMAT = "skingenbench.stylegan2_ada/1"
WEIGHTS_FILE = "stylegan2_ada.safetensors"


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@register_generator(
    profiles=PROFILES,
    conditional="optional",
    default_sampler="stylegan",
    description="StyleGAN2 (Karras et al. 2020) with adaptive discriminator augmentation (Karras et al. 2020, "
    "limited data), plain PyTorch; seeded sampling with truncation.",
)
class StyleGAN2ADABackend(GeneratorBackend):
    name = "stylegan2_ada"
    title = "StyleGAN2-ADA"
    config_class = StyleGAN2Config
    state_format = STATE_FORMAT
    conditional = False  # class labels (not condition maps) drive the optional class conditioning
    samplers = SAMPLERS
    inapplicable_options = ("steps", "eta")
    model_fields = MODEL_FIELDS
    training_fields = TRAINING_FIELDS
    schedule_spans_run = False

    # What ``build`` makes: the sampling copy G_ema always, the rest for training only.
    G_ema = BuiltPart[Generator]()
    G = BuiltPart[Generator]()
    D = BuiltPart[Discriminator]()
    opt_G = BuiltPart[torch.optim.Optimizer]()
    opt_D = BuiltPart[torch.optim.Optimizer]()
    ada = BuiltPart[AdaptiveAugment]()
    path_length = BuiltPart[PathLengthRegularizer]()
    generator = BuiltPart[torch.Generator]()  # all training randomness

    def __init__(self, config: StyleGAN2Config, device: str = "") -> None:
        super().__init__(config, device)
        self.config: StyleGAN2Config = config
        self._nimg = 0

    # -- what the training loop reads ------------------------------------------------------------------------
    @property
    def augment_p(self) -> float:
        """The current augmentation probability (0 before training and for sampling-only backends)."""
        return self.ada.p if self.trainable else 0.0

    def total_steps_for(self, dataset_size: int) -> int:
        # A kimg budget is independent of the data set's size (ADA trains by images shown, not epochs).
        return self.config.total_steps()

    # -- life cycle ---------------------------------------------------------------------------------------------
    def _new_generator(self) -> Generator:
        c = self.config
        return Generator(
            z_dim=c.z_dim,
            w_dim=c.w_dim,
            num_classes=c.num_classes,
            mapping_layers=c.mapping_layers,
            resolution=c.resolution,
            channel_base=c.channel_base,
            channel_max=c.channel_max,
            mapping_lr_multiplier=c.mapping_lr_multiplier,
            w_avg_beta=c.w_avg_beta,
            conv_clamp=c.conv_clamp or None,
        )

    def _new_discriminator(self) -> Discriminator:
        c = self.config
        return Discriminator(
            resolution=c.resolution,
            channel_base=c.channel_base,
            channel_max=c.channel_max,
            num_classes=c.num_classes,
            mbstd_group_size=c.mbstd_group_size,
            mbstd_channels=c.mbstd_channels,
            mapping_layers=c.mapping_layers,
            conv_clamp=c.conv_clamp or None,
        )

    def _build(self, seed: int, total_steps: int, init_from: str | None) -> None:
        with self.initialisation_rng(seed):
            generator = self._new_generator()
            discriminator = self._new_discriminator() if total_steps > 0 else None
        ema = copy.deepcopy(generator).eval().requires_grad_(False)
        if init_from:
            self._load_pretrained(init_from, generator, discriminator, ema)
        self.G_ema = self._placed(ema)
        self.G = self.D = self.opt_G = self.opt_D = self.ada = self.path_length = self.generator = None
        self._nimg = 0
        if discriminator is not None:  # total_steps > 0
            self.G = self._placed(generator).train()
            self.D = self._placed(discriminator).train()
            self._build_training(seed)

    def _build_training(self, seed: int) -> None:
        c = self.config

        def adam(module: torch.nn.Module, interval: int, regularised: bool) -> torch.optim.Adam:
            ratio = interval / (interval + 1) if regularised else 1.0  # lazy regularisation, see module doc
            return torch.optim.Adam(
                module.parameters(),
                lr=c.learning_rate * ratio,
                betas=(c.adam_beta1**ratio, c.adam_beta2**ratio),
                eps=c.adam_epsilon,
            )

        self.opt_G = adam(self.G, c.pl_interval, c.pl_weight > 0)
        self.opt_D = adam(self.D, c.r1_interval, c.r1_gamma > 0)
        pipe = AugmentPipe(
            c.augment_transforms if c.augment != "none" else "none",
            p=c.augment_p if c.augment != "none" else 0.0,
        )
        self.ada = AdaptiveAugment(
            pipe,
            target=c.ada_target,
            interval=c.ada_interval,
            speed_kimg=c.ada_kimg,
            adaptive=c.augment == "ada",
        )
        self.path_length = PathLengthRegularizer(c.pl_decay, self.device)
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(derived_seed(seed, 1))

    def _load_pretrained(
        self, folder: str, generator: Generator, discriminator: Discriminator | None, ema: Generator
    ) -> None:
        """Weights from ``save_pretrained`` (our own safetensors format) for transfer learning."""
        root = Path(folder)
        if not (root / WEIGHTS_FILE).is_file() or self.check_pretrained_folder(root) is None:
            raise InvalidArgument(
                f"init_from {folder!r} has no {WEIGHTS_FILE} and {CONFIG_FILE}",
                field="init_from",
                hint="make one with StyleGAN2ADABackend.save_pretrained; NVIDIA pickles are not "
                "loaded (DESIGN.md rule 7): convert one with `skingenbench convert stylegan2-pkl`",
            )
        tensors = load_file(root / WEIGHTS_FILE)

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

        ema.load_state_dict(part("G_ema."))
        generator.load_state_dict(part("G.") or part("G_ema."))
        if discriminator is not None and part("D."):
            discriminator.load_state_dict(part("D."))

    def _save_weights(self, folder: Path) -> None:
        """G_ema (and G and D when training) as one safetensors file."""
        modules: list[tuple[str, torch.nn.Module]] = [("G_ema.", self.G_ema)]
        if self.trainable:  # G and D exist
            modules += [("G.", self.G), ("D.", self.D)]
        tensors = {}
        for prefix, module in modules:
            tensors.update(
                {prefix + k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
            )
        save_file(tensors, folder / WEIGHTS_FILE)

    # -- training -----------------------------------------------------------------------------------------------
    def _labels(self, labels: object, count: int) -> torch.Tensor | None:
        """Class indices on the device for a conditional model; None (labels ignored) otherwise."""
        if self.config.num_classes == 0:
            return None
        if labels is None:
            raise InvalidArgument(
                f"this model is conditional on {self.config.num_classes} classes: give labels", field="labels"
            )
        indices = torch.as_tensor(
            np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels
        ).reshape(-1)
        if indices.numel() == 1 and count > 1:
            indices = indices.expand(count)
        if indices.numel() != count or indices.is_floating_point() or indices.dtype == torch.bool:
            raise InvalidArgument(f"labels must be {count} integers, got {indices.tolist()}", field="labels")
        if bool((indices < 0).any()) or bool((indices >= self.config.num_classes).any()):
            raise InvalidArgument(
                f"labels must lie in [0, {self.config.num_classes}), got {indices.tolist()}", field="labels"
            )
        return indices.to(self.device, torch.long)

    def _check_conditions(self, images: torch.Tensor, conditions: torch.Tensor | None) -> None:
        if conditions is not None:
            raise InvalidArgument("stylegan2_ada takes class labels, not condition maps", field="conditions")

    def _train_step(
        self, images: torch.Tensor, labels: torch.Tensor | None, conditions: torch.Tensor | None
    ) -> dict[str, float]:
        c = self.config
        real = images.to(self.device, torch.float32, non_blocking=True)
        real = real.contiguous(memory_format=self.memory_format)
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
            fake = self.G(
                latents(batch), cls, mixing_prob=c.style_mixing_prob, generator=rng, update_w_avg=True
            )
            fake_logits = self.D(augment(fake, rng), cls)
        loss_g = generator_loss(fake_logits)
        self._optimise(self.opt_G, loss_g)
        metrics["loss_G"] = self._finite(loss_g, "generator loss")

        # 2. Lazy path-length regularisation on a smaller batch.
        if c.pl_weight > 0 and step % c.pl_interval == 0:
            count = max(1, batch // c.pl_batch_shrink)
            with self._autocast():
                ws = self.G.styles(
                    latents(count),
                    cls[:count] if cls is not None else None,
                    mixing_prob=c.style_mixing_prob,
                    generator=rng,
                )
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
            raise FailedPrecondition(
                f"StyleGAN2-ADA {what} is {number} at step {self._step}; training diverged",
                hint="lower learning_rate, raise r1_gamma, or use mixed_precision='no'",
            )
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
        for shadow_buffer, buffer in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            shadow_buffer.copy_(buffer)  # w_avg and the constant noise follow G
        return beta

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def _training_state(self) -> TrainingState:
        return {
            "nimg": self._nimg,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "ada": self.ada.state_dict(),
            "pl_mean": self.path_length.mean,
            "rng": self.generator.get_state(),
            "rng_device": torch.device(self.device).type,
        }

    def _load_state(self, state: TrainingState) -> None:
        self.G_ema.load_state_dict(state_entry(state, "G_ema", dict))
        if self.trainable:
            self.G.load_state_dict(state_entry(state, "G", dict))
            self.D.load_state_dict(state_entry(state, "D", dict))
            self.opt_G.load_state_dict(state_entry(state, "opt_G", dict))
            self.opt_D.load_state_dict(state_entry(state, "opt_D", dict))
            self.ada.load_state_dict(state_entry(state, "ada", dict))
            self.path_length.mean = state_entry(state, "pl_mean", torch.Tensor).to(self.device, torch.float32)
            if state["rng_device"] == torch.device(self.device).type:
                self.generator.set_state(state_entry(state, "rng", torch.Tensor).cpu())
            else:
                # Generator states do not port between CPU and CUDA: continue with a fresh stream derived
                # from (seed, step) — still deterministic, not bit-exact.
                seed, step = state_entry(state, "seed", int), state_entry(state, "step", int)
                self.generator.manual_seed(derived_seed(seed, 2 + step))
        self._nimg = state_entry(state, "nimg", int)

    # -- sampling ------------------------------------------------------------------------------------------------
    def _default_sampler(self) -> str:
        return "stylegan_const" if self.config.noise_mode == "const" else "stylegan"

    def _default_options(self) -> SamplerOptions:
        """``resolve_options(None)`` uses the config's ``default_truncation_psi``; given options are taken literally."""
        return SamplerOptions(truncation_psi=self.config.default_truncation_psi)

    def _sampling_inputs(self, seeds: list[int], conditioning: Conditioning) -> torch.Tensor | None:
        """Class indices from ``conditioning``: ``{"class": int or one int per seed}`` for a conditional model,
        empty otherwise. A ``"label"`` (the class's name) may ride beside ``"class"``, as the generation service
        sends it so that manifests name the class, and is not looked at: the network knows classes only by index
        (the model record's ``classes`` maps names to indices)."""
        if not conditioning:
            requested: dict[str, object] = {}
        elif isinstance(conditioning, Mapping):
            requested = dict(conditioning)
        else:
            raise InvalidArgument(
                "stylegan2_ada takes one conditioning dict for all images, not one per image",
                field="conditioning",
            )
        labels = requested.pop("class", None)
        name = requested.pop("label", None)
        if name is not None and labels is None:  # a name alone cannot be mapped here: refuse, do not ignore
            raise InvalidArgument(
                f"stylegan2_ada selects a class by index ('class'), not by name ({name!r})",
                field="conditioning",
                hint="map the name with the model's sorted classes, as the generation service does",
            )
        if requested:
            raise InvalidArgument(
                f"stylegan2_ada takes only a 'class' conditioning, got {sorted(requested)}",
                field="conditioning",
            )
        if labels is not None and self.config.num_classes == 0:
            raise InvalidArgument("this model is unconditional and takes no class", field="conditioning")
        return self._labels(labels, len(seeds)) if self.config.num_classes else None

    def _sample_batch(
        self, seeds: list[int], options: SamplerOptions, inputs: torch.Tensor | None
    ) -> np.ndarray:
        """Images from G_ema. ``truncation_psi`` is applied literally (0: every image is the mean image, 1: none)."""
        noise_mode = "const" if options.sampler == "stylegan_const" else "random"
        return self._synthesise(seeds, inputs, noise_mode, float(options.truncation_psi))

    def latents(
        self, seeds: list[int], noise_mode: str = "random"
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
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
    def _synthesise(
        self, seeds: list[int], cls: torch.Tensor | None, noise_mode: str, psi: float
    ) -> np.ndarray:
        z, noise = self.latents(seeds, noise_mode)
        z = z.to(self.device)
        noise = [n.to(self.device) for n in noise] if noise is not None else None
        with self._autocast():
            images = self.G_ema(z, cls, truncation_psi=psi, noise_mode=noise_mode, noise=noise)
        return images_to_uint8(images)
