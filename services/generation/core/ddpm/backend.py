"""DDPM backend: an unconditional pixel-space diffusion model on diffusers' ``UNet2DModel``.

Training is the simplified objective of Ho et al. 2020 ("Denoising Diffusion Probabilistic Models"):
pick t uniformly, noise a clean image to x_t, regress the added noise (epsilon) with MSE. Sampling runs
the full ancestral DDPM chain (``ddpm``, what the reference study used: 1000 steps), DDIM (Song et al. 2021,
"Denoising Diffusion Implicit Models"), which reuses the same trained network with far fewer steps (``eta`` = 0
is deterministic, 1 adds DDPM-like noise), or ``dpm_solver``: diffusers' ``DPMSolverMultistepScheduler`` as it
comes, the deterministic second-order multistep DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for
Guided Sampling of Diffusion Probabilistic Models"), 20 steps by default. DPM-Solver++ has no ``clip_sample``:
it predicts x_0 unclipped (its ``thresholding`` is Imagen's dynamic thresholding, left off).

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

import copy
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel
from diffusers.optimization import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.generation.core.backend import (
    BuiltPart,
    GeneratorBackend,
    SamplerOptions,
    TrainingState,
    as_json,
    check_seeds,
    derived_seed,
    images_to_uint8,
    state_entry,
)
from skingenbench.services.generation.core.ddpm.config import (
    DEFAULT_DPM_SOLVER_STEPS,
    MODEL_FIELDS,
    PROFILES,
    SAMPLERS,
    TRAINING_FIELDS,
    DDPMConfig,
)
from skingenbench.services.generation.core.registration import register_generator

STATE_FORMAT = "skingenbench.ddpm/1"


@register_generator(
    profiles=PROFILES,
    conditional="false",
    default_sampler="ddim",
    description="Unconditional DDPM (Ho et al. 2020) on a diffusers UNet2DModel; DDPM, DDIM or DPM-Solver++ sampling.",
)
class DDPMBackend(GeneratorBackend):
    name = "ddpm"
    title = "DDPM"
    config_class = DDPMConfig
    state_format = STATE_FORMAT
    samplers = SAMPLERS
    inapplicable_options = ("truncation_psi",)
    model_fields = MODEL_FIELDS
    training_fields = TRAINING_FIELDS

    # What ``build`` makes: the UNet always, the optimiser, its schedule and the training noise for training only.
    unet = BuiltPart[UNet2DModel]()
    optimizer = BuiltPart[torch.optim.Optimizer]()
    lr_scheduler = BuiltPart[torch.optim.lr_scheduler.LRScheduler]()
    noise_generator = BuiltPart[torch.Generator]()

    def __init__(self, config: DDPMConfig, device: str = "") -> None:
        super().__init__(config, device)
        self.config: DDPMConfig = config
        self.noise_scheduler = DDPMScheduler(**config.scheduler_kwargs())
        self.ema: EMAModel | None = None  # training with use_ema only
        self.grad_scaler: torch.amp.GradScaler | None = None  # fp16 training only
        self._ema_unet: UNet2DModel | None = None  # sampling copy holding the EMA weights

    # -- life cycle -------------------------------------------------------------------------------------------
    def _build(self, seed: int, total_steps: int, init_from: str | None) -> None:
        if init_from:
            unet = self._load_pretrained(init_from)
        else:
            with self.initialisation_rng(seed):
                unet = UNet2DModel(**self.config.unet_kwargs())
        self._placed(unet)
        self.unet = unet
        self._ema_unet = None
        self.ema = self.optimizer = self.lr_scheduler = self.grad_scaler = self.noise_generator = None
        if total_steps == 0:  # sampling only: no optimiser memory
            unet.eval().requires_grad_(False)
        else:
            self._build_training(seed, total_steps)

    def _build_training(self, seed: int, total_steps: int) -> None:
        config = self.config
        self.unet.train()
        self.optimizer = torch.optim.AdamW(
            self.unet.parameters(),
            lr=config.learning_rate,
            betas=(config.adam_beta1, config.adam_beta2),
            eps=config.adam_epsilon,
            weight_decay=config.weight_decay,
        )
        if config.lr_schedule == "cosine":
            self.lr_scheduler = get_cosine_schedule_with_warmup(
                self.optimizer, config.lr_warmup_steps, total_steps
            )
        else:
            self.lr_scheduler = get_constant_schedule_with_warmup(self.optimizer, config.lr_warmup_steps)
        if self.autocast_dtype == torch.float16:  # bf16 has fp32's range and needs no loss scaling
            self.grad_scaler = torch.amp.GradScaler(torch.device(self.device).type)
        if config.use_ema:
            self.ema = EMAModel(
                self.unet.parameters(),
                decay=float(config.ema_max_decay),
                use_ema_warmup=True,
                inv_gamma=float(config.ema_inv_gamma),
                power=float(config.ema_power),
                foreach=True,
            )
        self.noise_generator = torch.Generator(self.device)
        self.noise_generator.manual_seed(derived_seed(seed, 1))

    def _load_pretrained(self, folder: str) -> UNet2DModel:
        """A local diffusers UNet folder (or a pipeline folder with ``unet/``) for transfer learning."""
        root = Path(folder)
        self.check_pretrained_folder(root)  # a folder of ours says what its weights mean
        if (root / "config.json").is_file():
            subfolder = None
        elif (root / "unet" / "config.json").is_file():
            subfolder = "unet"
        else:
            raise InvalidArgument(
                f"init_from {folder!r} is not a diffusers UNet2DModel folder (no config.json, "
                "no unet/config.json)",
                field="init_from",
                hint="save one with UNet2DModel.save_pretrained or DDPMBackend.save_pretrained",
            )
        unet = UNet2DModel.from_pretrained(root, subfolder=subfolder, local_files_only=True)
        expected = as_json(self.config.unet_kwargs())
        found = as_json({key: unet.config.get(key) for key in expected})
        differences = [
            f"{key}: folder {found[key]!r}, config {expected[key]!r}"
            for key in expected
            if found[key] != expected[key]
        ]
        if differences:
            raise InvalidArgument(
                f"init_from {folder!r} does not match the DDPM config: " + "; ".join(differences),
                field="init_from",
                hint="set the config's UNet fields to the folder's",
            )
        return unet

    # -- training -----------------------------------------------------------------------------------------------
    def _train_step(
        self, images: torch.Tensor, labels: torch.Tensor | None, conditions: torch.Tensor | None
    ) -> dict[str, float]:
        # ``labels`` are accepted and unused: the benchmark trains one unconditional model per class.
        clean = images.to(self.device, torch.float32, non_blocking=True)
        clean = clean.contiguous(memory_format=self.memory_format)
        noise = torch.randn(clean.shape, generator=self.noise_generator, device=self.device)
        timesteps = torch.randint(
            0,
            self.config.num_train_timesteps,
            (clean.shape[0],),
            generator=self.noise_generator,
            device=self.device,
        )
        noisy = self.noise_scheduler.add_noise(clean, noise, timesteps)
        if self.config.prediction_type == "epsilon":
            target = noise
        else:
            target = self.noise_scheduler.get_velocity(clean, noise, timesteps)

        learning_rate = float(self.lr_scheduler.get_last_lr()[0])
        with self._autocast():
            prediction = self.unet(noisy, timesteps).sample
        loss = F.mse_loss(prediction.float(), target)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise FailedPrecondition(
                f"DDPM loss is {loss_value} at step {self._step}; training diverged",
                hint="lower learning_rate or use mixed_precision='no'",
            )

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
        metrics: dict[str, float] = {"loss": loss_value, "lr": learning_rate, "grad_norm": float(grad_norm)}
        if self.ema is not None:
            self.ema.step(self.unet.parameters())
            metrics["ema_decay"] = float(self.ema.cur_decay_value)
        self._ema_unet = None  # stale: rebuilt from the EMA on the next sample()
        return metrics

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def _training_state(self) -> TrainingState:
        return {
            "unet": self.unet.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "grad_scaler": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "noise_rng": self.noise_generator.get_state(),
            "noise_rng_device": torch.device(self.device).type,
        }

    def _load_state(self, state: TrainingState) -> None:
        self.unet.load_state_dict(state_entry(state, "unet", dict))
        if self.trainable:
            self._load_training_state(state)
        elif state["ema"] is not None:  # sampling only: the EMA weights are the model
            shadows = state_entry(state, "ema", dict)["shadow_params"]
            with torch.no_grad():
                for param, shadow in zip(self.unet.parameters(), shadows, strict=True):
                    param.copy_(shadow)
        self._ema_unet = None

    def _load_training_state(self, state: TrainingState) -> None:
        if (state["ema"] is None) != (self.ema is None):
            raise FailedPrecondition("checkpoint and config disagree on use_ema")
        self.optimizer.load_state_dict(state_entry(state, "optimizer", dict))
        self.lr_scheduler.load_state_dict(state_entry(state, "lr_scheduler", dict))
        if self.ema is not None:
            self.ema.load_state_dict(state_entry(state, "ema", dict))
            self.ema.to(device=self.device)
        if self.grad_scaler is not None and state["grad_scaler"] is not None:
            self.grad_scaler.load_state_dict(state_entry(state, "grad_scaler", dict))
        if state["noise_rng_device"] == torch.device(self.device).type:
            self.noise_generator.set_state(state_entry(state, "noise_rng", torch.Tensor).cpu())
        else:
            # Resuming on another device type (CPU <-> CUDA): generator states are not portable, so
            # continue with a fresh stream derived from (seed, step); still deterministic, not bit-exact.
            seed, step = state_entry(state, "seed", int), state_entry(state, "step", int)
            self.noise_generator.manual_seed(derived_seed(seed, 2 + step))

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

    def _sampling_scheduler(
        self, sampler: str
    ) -> DDPMScheduler | DDIMScheduler | DPMSolverMultistepScheduler:
        if sampler == "ddim":
            return DDIMScheduler(**self.config.scheduler_kwargs())
        if sampler == "dpm_solver":
            kwargs = self.config.scheduler_kwargs()
            kwargs.pop("clip_sample")  # not a DPM-Solver setting (see the module docstring)
            return DPMSolverMultistepScheduler(**kwargs)
        return DDPMScheduler(**self.config.scheduler_kwargs())

    def _default_sampler(self) -> str:
        return self.config.default_sampler

    def _resolve_options(self, options: SamplerOptions) -> SamplerOptions:
        """Steps default to the full chain for ``ddpm``, ``default_ddim_steps`` for ``ddim`` and
        ``DEFAULT_DPM_SOLVER_STEPS`` for ``dpm_solver``; eta is DDIM's."""
        if options.sampler != "ddim" and options.eta != 0.0:
            raise InvalidArgument("eta applies to the ddim sampler only", field="eta")
        default_steps = {
            "ddpm": self.config.num_train_timesteps,
            "ddim": self.config.default_ddim_steps,
            "dpm_solver": DEFAULT_DPM_SOLVER_STEPS,
        }[options.sampler]
        steps = options.steps or default_steps
        if steps > self.config.num_train_timesteps:
            raise InvalidArgument(
                f"steps {steps} exceeds num_train_timesteps ({self.config.num_train_timesteps})",
                field="steps",
            )
        return SamplerOptions(options.sampler, steps, options.eta, options.truncation_psi, options.batch_size)

    def initial_noise(self, seeds: list[int]) -> tuple[torch.Tensor, list[torch.Generator]]:
        """x_T for each seed from its own CPU generator, and the generators (which the sampler continues)."""
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in check_seeds(seeds)]
        shape = (1, 3, self.config.resolution, self.config.resolution)
        noise = torch.cat([torch.randn(shape, generator=generator) for generator in generators])
        return noise, generators

    def _sample_batch(
        self, seeds: list[int], options: SamplerOptions, inputs: torch.Tensor | None
    ) -> np.ndarray:
        # ``inputs`` is None: the model is unconditional (``_sampling_inputs`` refuses conditioning).
        unet = self._sampling_unet()
        was_training = unet.training
        unet.eval()
        try:
            return self._denoise(unet, seeds, options.sampler, options.steps, options.eta)
        finally:
            unet.train(was_training)

    @torch.inference_mode()
    def _denoise(
        self, unet: UNet2DModel, seeds: list[int], sampler: str, steps: int, eta: float
    ) -> np.ndarray:
        scheduler = self._sampling_scheduler(sampler)
        scheduler.set_timesteps(steps, device=self.device)
        noise, generators = self.initial_noise(seeds)
        # The UNet's layout (channels_last on the accelerator path), as training feeds it: no conversion per step.
        sample = (noise.to(self.device) * scheduler.init_noise_sigma).contiguous(
            memory_format=self.memory_format
        )
        extra = {"eta": eta} if sampler == "ddim" else {}
        for timestep in scheduler.timesteps:
            with self._autocast():
                prediction = unet(scheduler.scale_model_input(sample, timestep), timestep).sample
            # One generator per image: the per-step noise of image i depends only on its seed.
            sample = scheduler.step(
                prediction.float(), timestep, sample, generator=generators, **extra
            ).prev_sample
        return images_to_uint8(sample)

    # -- export -----------------------------------------------------------------------------------------------------
    def _save_weights(self, folder: Path) -> None:
        """The sampling weights (EMA when kept) as a diffusers folder with the scheduler beside them: it loads with
        ``UNet2DModel.from_pretrained`` / ``DDPMPipeline`` as well as ``from_pretrained`` and ``init_from``."""
        self._sampling_unet().save_pretrained(folder, safe_serialization=True)
        self._sampling_scheduler("ddpm").save_pretrained(folder)
