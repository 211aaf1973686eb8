"""DDPM backend: registry and profiles, config validation, seeded sampling, EMA, transfer init, checkpoints."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from diffusers import UNet2DModel
from PIL import Image
from skingenbench.services.core.checkpoint import state_from_bytes, state_to_bytes
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.generation.core.backend import SamplerOptions
from skingenbench.services.generation.core.ddpm import DDPMBackend
from skingenbench.services.generation.core.registry import (
    GENERATORS,
    backend_from_config_json,
    create_backend,
)
from skingenbench.services.generation.core.sampling import (
    bench_sampling,
    image_seeds,
    sample_images,
    to_png_bytes,
)

# 16x16 images and a 50-step diffusion keep the full DDPM chain to a fraction of a second per batch.
SMALL = {
    "resolution": 16,
    "num_train_timesteps": 50,
    "default_ddim_steps": 5,
    "sample_batch_size": 4,
    "learning_rate": 2e-3,
    "lr_warmup_steps": 0,
    "ema_max_decay": 0.9,
}


def small_backend(total_steps: int = 0, seed: int = 0, **overrides) -> DDPMBackend:
    backend = create_backend("ddpm", "tiny", {**SMALL, **overrides}, device="cpu")
    backend.build(seed, total_steps=total_steps)
    return backend


def train_a_little(backend: DDPMBackend, steps: int = 3) -> None:
    generator = torch.Generator().manual_seed(1)
    images = (
        torch.rand(steps, backend.batch_size, 3, backend.resolution, backend.resolution, generator=generator)
        * 2
        - 1
    )
    for batch in images:
        backend.train_step(batch)


# -- registry and profiles ------------------------------------------------------------------------------------
def test_registry_lists_ddpm_with_tiny_and_paper_profiles():
    assert "ddpm" in GENERATORS.names()
    description = GENERATORS.describe("ddpm")
    assert set(description["profiles"]) == {"tiny", "paper"}
    assert description["capabilities"] == {
        "conditional": "false",
        "samplers": "ddpm,ddim,dpm_solver",
        "default_sampler": "ddim",
    }
    backend = create_backend("ddpm", "tiny", device="cpu")
    assert isinstance(backend, DDPMBackend) and backend.conditional is False


def test_paper_profile_is_the_reference_run():
    config = GENERATORS.config("ddpm", "paper")
    assert (config.resolution, config.batch_size, config.learning_rate) == (256, 16, 1e-5)
    assert (config.lr_warmup_steps, config.num_train_timesteps, config.train_epochs) == (500, 1000, 120)
    assert config.use_ema and config.mixed_precision == "fp16" and config.beta_schedule == "linear"
    # google/ddpm-celebahq-256's UNet: six levels, attention in the 5th down and the 2nd up block.
    unet = config.unet_kwargs()
    assert unet["block_out_channels"] == (128, 128, 256, 256, 512, 512) and unet["layers_per_block"] == 2
    assert unet["down_block_types"] == ("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D")
    assert unet["up_block_types"] == ("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4
    backend = create_backend("ddpm", "paper", device="cpu")  # not built: no 100M-parameter UNet here
    resolved = backend.resolve_options(None)
    assert (resolved.sampler, resolved.steps) == ("ddpm", 1000)  # the study sampled the full chain
    resolved = backend.resolve_options(SamplerOptions(sampler="ddim"))
    assert (resolved.sampler, resolved.steps, resolved.batch_size) == ("ddim", 50, 16)
    assert backend.total_steps_for(1000) == math.ceil(120 * 1000 / 16)


def test_tiny_profile_builds_and_trains_on_cpu():
    backend = create_backend("ddpm", "tiny", device="cpu")
    backend.build(0, total_steps=backend.total_steps_for(10))
    assert backend.planned_steps == 200 and backend.autocast_dtype is None  # CPU stays fp32
    metrics = backend.train_step(torch.zeros(8, 3, 32, 32))
    assert set(metrics) >= {"loss", "lr", "grad_norm", "ema_decay"} and backend.step == 1


# -- config validation ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"train_steps": -5}, "train_steps"),
        ({"train_steps": 0}, "train_steps"),  # neither steps nor epochs
        ({"resolution": 33}, "resolution"),  # two levels need an even side
        ({"block_out_channels": [16, 32, 32, 32], "resolution": 36}, "resolution"),  # 36 % 2**3 != 0
        ({"block_out_channels": [12, 32]}, "block_out_channels"),  # 12 channels, 8 norm groups
        ({"attention_levels": [2]}, "attention_levels"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"layers_per_block": 1.5}, "layers_per_block"),
        ({"beta_schedule": "quadratic"}, "beta_schedule"),
        ({"mixed_precision": "fp8"}, "mixed_precision"),
        ({"default_ddim_steps": 2000}, "default_ddim_steps"),
        ({"hflip_probability": 1.5}, "hflip_probability"),
    ],
)
def test_out_of_range_config_is_refused_naming_the_field(overrides, field):
    with pytest.raises(InvalidArgument) as caught:
        GENERATORS.config("ddpm", "tiny", overrides)
    assert caught.value.context["field"] == field and field in str(caught.value)


def test_unknown_config_key_is_refused():
    with pytest.raises(InvalidArgument, match="unknown config key.*learning_rat"):
        create_backend("ddpm", "tiny", {"learning_rat": 1e-4})


def test_json_lists_become_tuples_and_config_json_round_trips():
    backend = create_backend("ddpm", "tiny", {"block_out_channels": [8, 16], "attention_levels": []})
    assert backend.config.block_out_channels == (8, 16)
    clone = backend_from_config_json(backend.config_json(), device="cpu")
    assert clone.config == backend.config and json.loads(backend.config_json())["backend"] == "ddpm"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (SamplerOptions(steps=-1), "steps"),
        (SamplerOptions(steps=51), "steps"),  # more than num_train_timesteps
        (SamplerOptions(sampler="euler"), "sampler"),
        (SamplerOptions(sampler="ddpm", eta=0.5), "eta"),
        (SamplerOptions(truncation_psi=0.7), "truncation_psi"),
    ],
)
def test_sampler_options_ddpm_cannot_honour_are_refused(options, field):
    backend = create_backend("ddpm", "tiny", SMALL, device="cpu")
    with pytest.raises(InvalidArgument) as caught:
        backend.resolve_options(options)
    assert caught.value.context["field"] == field


# -- sampling --------------------------------------------------------------------------------------------------------
def test_sampling_is_seeded_per_image():
    backend = small_backend(total_steps=5)
    train_a_little(backend)
    ddim = SamplerOptions(sampler="ddim", steps=5, batch_size=4)
    seeds = [3, 7, 11, 19]
    first = backend.sample(seeds, ddim)
    assert first.shape == (4, 16, 16, 3) and first.dtype == np.uint8
    assert np.array_equal(first, backend.sample(seeds, ddim))  # same seeds and settings: same bytes
    # The starting noise of an image is a function of its seed alone, bit for bit.
    batched_noise, _ = backend.initial_noise(seeds)
    single_noise = torch.cat([backend.initial_noise([seed])[0] for seed in seeds])
    assert torch.equal(batched_noise, single_noise)
    # Batched convolutions may round differently from single ones (by ~1e-6), so allow one grey level
    # on a handful of pixels; a shared or batch-dependent generator would change whole images.
    for options in (
        ddim,
        SamplerOptions(sampler="ddpm", batch_size=4),
        SamplerOptions(sampler="ddim", steps=5, eta=1.0, batch_size=4),
    ):
        batched = backend.sample(seeds, options).astype(int)
        one_by_one = np.concatenate(
            [backend.sample([seed], replace_batch(options, 1)) for seed in seeds]
        ).astype(int)
        reversed_order = backend.sample(seeds[::-1], options)[::-1].astype(int)
        for other in (one_by_one, reversed_order):
            difference = np.abs(batched - other)
            assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
    # Different seeds give different images.
    assert all(np.abs(first[i].astype(int) - first[j]).mean() > 5 for i in range(4) for j in range(i + 1, 4))


def replace_batch(options: SamplerOptions, batch_size: int) -> SamplerOptions:
    return SamplerOptions(options.sampler, options.steps, options.eta, options.truncation_psi, batch_size)


def test_ddpm_full_chain_and_ddim_both_run_and_differ():
    backend = small_backend()
    ddpm = backend.sample([0, 1], SamplerOptions(sampler="ddpm"))  # 50 steps, the full chain here
    ddim = backend.sample([0, 1], SamplerOptions(sampler="ddim", steps=5))
    default = backend.sample([0, 1])  # the tiny profile's default sampler is DDIM
    assert ddpm.shape == ddim.shape == (2, 16, 16, 3)
    assert not np.array_equal(ddpm, ddim) and np.array_equal(default, ddim)


def test_sampling_uses_the_ema_weights():
    backend = small_backend(total_steps=5, ema_max_decay=0.5)
    train_a_little(backend)
    sampling_params = list(backend._sampling_unet().parameters())
    for shadow, used in zip(backend.ema.shadow_params, sampling_params, strict=True):
        assert torch.equal(shadow, used)
    assert any(
        not torch.equal(used, raw)
        for used, raw in zip(sampling_params, backend.unet.parameters(), strict=True)
    )
    # A sampling-only backend loaded from the checkpoint draws the same images.
    tensors, skeleton = state_to_bytes(backend.state())
    sampler = small_backend(total_steps=0, seed=99, ema_max_decay=0.5)
    sampler.load_state(state_from_bytes(tensors, skeleton))
    options = SamplerOptions(sampler="ddim", steps=5)
    assert sampler.step == 3
    assert np.array_equal(sampler.sample([5, 6], options), backend.sample([5, 6], options))


def test_sample_images_yields_batches_with_per_image_seeds():
    backend = small_backend()
    options = SamplerOptions(sampler="ddim", steps=3)
    batches = list(sample_images(backend, count=5, seed=10, options=options, batch_size=2))
    assert [b.first_index for b in batches] == [0, 2, 4] and [len(b.seeds) for b in batches] == [2, 2, 1]
    assert [s for b in batches for s in b.seeds] == image_seeds(5, 10) == [10, 11, 12, 13, 14]
    whole = np.concatenate([b.images for b in batches])
    assert np.abs(whole.astype(int) - backend.sample(list(range(10, 15)), options)).max() <= 1
    png = to_png_bytes(whole[0])
    assert png.startswith(b"\x89PNG") and png == to_png_bytes(whole[0].copy())
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), whole[0])
    with pytest.raises(InvalidArgument):
        to_png_bytes(whole[0].astype(np.float32))
    assert bench_sampling(backend, 2, "ddim", 2) > 0


def test_conditioning_and_bad_seeds_are_refused():
    backend = small_backend()
    with pytest.raises(InvalidArgument, match="unconditional"):
        backend.sample([0], conditioning={"maps": np.zeros((1, 16, 16, 3))})
    for bad in (-1, 2**64, 1.5, True):
        with pytest.raises(InvalidArgument, match="seed"):
            backend.sample([bad])


# -- transfer initialisation and checkpoints -------------------------------------------------------------------------
def test_init_from_a_local_diffusers_folder(tmp_path):
    config = GENERATORS.config("ddpm", "tiny", SMALL)
    torch.manual_seed(1234)
    pretrained = UNet2DModel(**config.unet_kwargs())
    pretrained.save_pretrained(tmp_path / "unet")
    backend = DDPMBackend(config, device="cpu")
    backend.build(0, total_steps=3, init_from=str(tmp_path / "unet"))
    random_init = small_backend(total_steps=3)
    for name, tensor in pretrained.state_dict().items():
        assert torch.equal(backend.unet.state_dict()[name], tensor), name
    assert any(
        not torch.equal(random_init.unet.state_dict()[n], t) for n, t in pretrained.state_dict().items()
    )
    # The EMA starts from the loaded weights, and an exported model loads back as another run's start.
    train_a_little(backend, 2)
    backend.save_pretrained(tmp_path / "export")
    assert (tmp_path / "export" / "scheduler_config.json").is_file()
    reloaded = DDPMBackend(config, device="cpu")
    reloaded.build(0, init_from=str(tmp_path / "export"))
    for shadow, param in zip(backend.ema.shadow_params, reloaded.unet.parameters(), strict=True):
        assert torch.equal(shadow, param)


def test_init_from_refuses_a_mismatching_or_missing_folder(tmp_path):
    UNet2DModel(**GENERATORS.config("ddpm", "tiny", SMALL).unet_kwargs()).save_pretrained(tmp_path / "unet")
    other = create_backend("ddpm", "tiny", {**SMALL, "block_out_channels": [16, 16]}, device="cpu")
    with pytest.raises(InvalidArgument, match="block_out_channels"):
        other.build(0, init_from=str(tmp_path / "unet"))
    with pytest.raises(InvalidArgument, match="not a diffusers"):
        other.build(0, init_from=str(tmp_path / "nothing-here"))


def test_load_state_refuses_checkpoints_of_another_model_or_schedule():
    state = small_backend(total_steps=4).state()
    with pytest.raises(FailedPrecondition, match="block_out_channels"):
        small_backend(total_steps=4, block_out_channels=[8, 16]).load_state(state)
    with pytest.raises(FailedPrecondition, match="planned"):
        small_backend(total_steps=9).load_state(state)
    with pytest.raises(FailedPrecondition, match="not a DDPM checkpoint"):
        small_backend(total_steps=4).load_state({"format": "something-else"})


def test_a_sampling_only_backend_refuses_to_train():
    backend = small_backend(total_steps=0)
    with pytest.raises(FailedPrecondition, match="sampling only"):
        backend.train_step(torch.zeros(8, 3, 16, 16))
    with pytest.raises(FailedPrecondition):
        DDPMBackend(GENERATORS.config("ddpm", "tiny"), device="cpu").sample([0])  # not built
    trainable = small_backend(total_steps=1)
    with pytest.raises(InvalidArgument, match="images must be"):
        trainable.train_step(torch.zeros(8, 3, 32, 32))
    trainable.train_step(torch.zeros(8, 3, 16, 16))
    with pytest.raises(FailedPrecondition, match="planned for 1 steps"):
        trainable.train_step(torch.zeros(8, 3, 16, 16))
