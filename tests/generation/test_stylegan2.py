"""StyleGAN2-ADA: networks, ADA, losses, training through the generic loop, exact resume, seeded sampling."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from skingenbench.services.core.checkpoint import state_from_bytes, state_to_bytes
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.core.registry import Registry, config_from_dict
from skingenbench.services.generation.core.backend import SamplerOptions
from skingenbench.services.generation.core.stylegan2 import augment as ada
from skingenbench.services.generation.core.stylegan2.augment import AdaptiveAugment, AugmentPipe
from skingenbench.services.generation.core.stylegan2.backend import StyleGAN2ADABackend, parameter_count
from skingenbench.services.generation.core.stylegan2.config import PAPER, PROFILES, TINY, StyleGAN2Config
from skingenbench.services.generation.core.stylegan2.discriminator import minibatch_stddev
from skingenbench.services.generation.core.stylegan2.losses import (
    PathLengthRegularizer,
    discriminator_loss,
    generator_loss,
    r1_penalty,
)
from skingenbench.services.generation.core.stylegan2.synthesis import ModulatedConv2d, upsample_2x
from skingenbench.services.generation.core.training import train

# 16x16 keeps a full G + D + regulariser step to ~0.1 s on one CPU thread.
SMALL = {"resolution": 16, "batch_size": 4, "checkpoint_every_steps": 0, "sample_batch_size": 4}


def tiny_config(**overrides) -> StyleGAN2Config:
    return config_from_dict(StyleGAN2Config, TINY, {**SMALL, **overrides})


def tiny_backend(total_steps: int = 0, seed: int = 0, **overrides) -> StyleGAN2ADABackend:
    backend = StyleGAN2ADABackend(tiny_config(**overrides), device="cpu")
    backend.build(seed, total_steps=total_steps)
    return backend


def blobs(count: int, size: int = 16, seed: int = 0) -> list[tuple[np.ndarray, int]]:
    """Skin-coloured squares with one dark disc each, label 0."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    items = []
    for _ in range(count):
        image = np.empty((size, size, 3), np.uint8)
        image[:] = (rng.integers(180, 230), rng.integers(130, 170), rng.integers(110, 150))
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= (size // 5) ** 2] = rng.integers(30, 80, 3)
        items.append((image, 0))
    return items


def images_tensor(count: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.stack(
        [torch.from_numpy(im).permute(2, 0, 1).float() / 127.5 - 1 for im, _ in blobs(count, size, seed)]
    )


# -- profiles and the registry entry the lead adds ---------------------------------------------------------------
def test_paper_profile_is_the_reference_run():
    assert (PAPER.resolution, PAPER.batch_size, PAPER.learning_rate) == (256, 32, 0.0025)
    assert (PAPER.adam_beta1, PAPER.adam_beta2, PAPER.mapping_layers) == (0.0, 0.99, 2)
    assert (PAPER.ada_target, PAPER.train_kimg, PAPER.hflip_probability) == (0.7, 240.0, 0.5)
    assert (
        PAPER.default_truncation_psi == 0.8 and PAPER.augment == "ada" and PAPER.augment_transforms == "bgc"
    )
    assert StyleGAN2Config().ada_target == 0.6  # the ADA paper's default; the study raised it
    assert StyleGAN2ADABackend(PAPER, "cpu").total_steps_for(1234) == 7500  # 240 kimg / 32


def test_registry_entry_for_the_lead():
    registry = Registry("generator")

    @registry.register(
        "stylegan2_ada",
        config_cls=StyleGAN2Config,
        profiles=PROFILES,
        description="StyleGAN2-ADA",
        capabilities={
            "conditional": "optional",
            "samplers": "stylegan,stylegan_const",
            "default_sampler": "stylegan",
        },
    )
    def create(config: StyleGAN2Config, device: str = "") -> StyleGAN2ADABackend:
        return StyleGAN2ADABackend(config, device)

    backend = registry.create("stylegan2_ada", "tiny", {"resolution": 16}, device="cpu")
    assert isinstance(backend, StyleGAN2ADABackend) and backend.resolution == 16
    assert registry.describe("stylegan2_ada")["profiles"]["paper"]["ada_target"] == 0.7
    with pytest.raises(InvalidArgument, match="resolution"):
        registry.config("stylegan2_ada", "tiny", {"resolution": 24})
    with pytest.raises(InvalidArgument, match="augment"):
        registry.config("stylegan2_ada", "tiny", {"augment": "sometimes"})
    with pytest.raises(InvalidArgument, match="unknown config key"):
        registry.config("stylegan2_ada", "tiny", {"gamma": 1.0})


# -- networks ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("resolution", [16, 32])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_generator_and_discriminator_shapes_and_every_parameter_gets_a_gradient(resolution, num_classes):
    backend = tiny_backend(1, resolution=resolution, num_classes=num_classes)
    labels = torch.tensor([0, 1, 2, 1]) if num_classes else None
    z = torch.randn(4, backend.config.z_dim)
    assert backend.G.num_ws == 2 * int(math.log2(resolution)) - 2
    images = backend.G(z, labels, mixing_prob=0.5)
    assert images.shape == (4, 3, resolution, resolution)
    backend.ada.pipe.p = 0.5  # through the augmentation, as in training
    logits = backend.D(backend.ada.pipe(images, torch.Generator().manual_seed(0)), labels)
    assert logits.shape == (4, 1)
    logits.sum().backward()
    for name, module in (("G", backend.G), ("D", backend.D)):
        silent = [
            n
            for n, p in module.named_parameters()
            if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().any()
        ]
        assert silent == [], f"{name} parameters without gradient: {silent}"
    if num_classes:
        with pytest.raises(ValueError, match="conditional"):
            backend.G(z)


def test_demodulation_restores_unit_variance_and_fused_equals_unfused():
    torch.manual_seed(0)
    conv = ModulatedConv2d(64, 64, 3, w_dim=16)
    x = torch.randn(4, 64, 32, 32)
    w = torch.randn(4, 16) * 3  # styles far from 1: without demodulation the std would follow them
    y = conv(x, w)
    assert (
        0.9 < float(y[:, :, 1:-1, 1:-1].detach().std()) < 1.1
    )  # StyleGAN2 eq. 2-3 (border pixels see zero padding)
    conv.demodulate = False
    assert float(conv(x, w).detach().std()) > 2.0
    conv.demodulate = True
    conv.fused = True  # per-sample weights + grouped convolution: the paper's formulation
    assert torch.allclose(conv(x, w), y, atol=1e-4)
    up = ModulatedConv2d(8, 4, 3, w_dim=16, up=True)
    small = torch.randn(2, 8, 8, 8)
    unfused = up(small, w[:2])
    up.fused = True
    assert unfused.shape == (2, 4, 16, 16) and torch.allclose(up(small, w[:2]), unfused, atol=1e-5)


def test_upsampling_filter_is_bilinear_and_keeps_brightness():
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    row = upsample_2x(ramp)[0, 0, 8]
    assert torch.allclose(row[1:-1], torch.arange(1, 15) / 2 - 0.25)  # interior of a linear ramp stays linear
    assert torch.allclose(upsample_2x(torch.ones(1, 3, 8, 8))[..., 2:-2, 2:-2], torch.ones(1, 3, 12, 12))


def test_minibatch_stddev_appends_the_group_spread():
    x = torch.zeros(4, 2, 4, 4)
    assert float(minibatch_stddev(x, 4)[:, 2].abs().max()) < 1e-3  # identical samples: no spread
    x = torch.randn(6, 2, 4, 4)  # 6 is not divisible by 4: the group falls back to 3
    out = minibatch_stddev(x, 4)
    assert out.shape == (6, 3, 4, 4) and float(out[:, 2].min()) > 0


def test_truncation_psi_zero_gives_the_mean_image_and_one_does_not():
    backend = tiny_backend()
    with torch.no_grad():
        backend.G_ema.mapping.w_avg.normal_()  # a trained-looking mean w
    const = SamplerOptions(sampler="stylegan_const", truncation_psi=0.0)
    collapsed = backend.sample([0, 1, 2], const)
    assert (collapsed == collapsed[0]).all()
    ws = backend.G_ema.mapping.w_avg[None, None].expand(1, backend.G_ema.num_ws, -1)
    mean_image = backend.G_ema.synthesis(ws, noise_mode="const")
    assert np.abs(collapsed[0].astype(int) - np.asarray(_uint8(mean_image))[0].astype(int)).max() <= 1
    free = backend.sample([0, 1, 2], SamplerOptions(sampler="stylegan_const", truncation_psi=1.0))
    assert not (free[1] == free[0]).all() and not (free[2] == free[0]).all()
    half = backend.sample([1], SamplerOptions(sampler="stylegan_const", truncation_psi=0.5))
    assert (
        np.abs(half.astype(int) - collapsed[1]).mean() < np.abs(free[1:2].astype(int) - collapsed[1]).mean()
    )


def _uint8(images: torch.Tensor) -> np.ndarray:
    from skingenbench.services.generation.core.backend import images_to_uint8

    return images_to_uint8(images)


def test_style_mixing_takes_later_layers_from_a_second_latent():
    backend = tiny_backend()
    G = backend.G_ema
    z = torch.randn(6, backend.config.z_dim)
    plain = G.styles(z)
    assert torch.equal(plain, plain[:, :1].expand_as(plain))
    mixed = G.styles(z, mixing_prob=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mixed[:, 0], plain[:, 0])  # layer 0 always comes from the first latent
    differs = (mixed != plain).any(dim=2)  # [N, num_ws]
    assert differs.any(dim=1).all()  # every image mixed at some cutoff ...
    assert (differs.int().diff(dim=1) >= 0).all()  # ... and from that layer on only
    assert G(z, mixing_prob=0.9, generator=torch.Generator().manual_seed(1)).shape == (6, 3, 16, 16)


# -- ADA -----------------------------------------------------------------------------------------------------------
def test_augmentation_at_p_zero_is_the_identity_and_at_p_one_changes_every_image():
    x = images_tensor(8)
    assert AugmentPipe("bgc", p=0.0)(x, torch.Generator().manual_seed(0)) is x
    out = AugmentPipe("bgc", p=1.0)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert ((out - x).abs().flatten(1).max(dim=1).values > 0.05).all()


@pytest.mark.parametrize("name", ada.PRESETS["bgc"])
def test_every_augmentation_is_differentiable_and_changes_images(name):
    x = images_tensor(8).requires_grad_(True)
    out = AugmentPipe((name,), p=1.0)(x, torch.Generator().manual_seed(3))
    assert not torch.equal(out, x)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(4))
    (gradient,) = torch.autograd.grad((out * weights).sum(), x)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0


def test_blitting_transforms_copy_pixels_exactly():
    x = images_tensor(16)
    flipped = AugmentPipe(("xflip",), p=1.0)(x, torch.Generator().manual_seed(0))
    kinds = [torch.equal(f, i) or torch.equal(f, i.flip(-1)) for f, i in zip(flipped, x, strict=True)]
    assert all(kinds) and any(not torch.equal(f, i) for f, i in zip(flipped, x, strict=True))
    turned = AugmentPipe(("rotate90",), p=1.0)(x, torch.Generator().manual_seed(0))
    assert all(
        any(torch.equal(t, torch.rot90(i, k, dims=(1, 2))) for k in range(4))
        for t, i in zip(turned, x, strict=True)
    )
    shifted = AugmentPipe(("xint",), p=1.0)(x, torch.Generator().manual_seed(0))
    for s, i in zip(shifted, x, strict=True):  # a whole-pixel shift of at most 2 px: the centre matches
        assert any(
            torch.equal(s[:, 4:12, 4:12], i[:, 4 - dy : 12 - dy, 4 - dx : 12 - dx])
            for dy in range(-2, 3)
            for dx in range(-2, 3)
        )


def test_colour_transforms_act_as_documented():
    x = images_tensor(8)
    bright = AugmentPipe(("brightness",), p=1.0)(x, torch.Generator().manual_seed(0))
    difference = (bright - x).flatten(1)
    assert torch.allclose(
        difference, difference[:, :1].expand_as(difference), atol=1e-5
    )  # one offset per image
    for name in ("hue", "saturation"):  # both act on chroma only: the luma (channel mean) is unchanged
        out = AugmentPipe((name,), p=1.0)(x, torch.Generator().manual_seed(0))
        assert torch.allclose(out.mean(dim=1), x.mean(dim=1), atol=1e-5) and not torch.allclose(out, x)


def test_ada_controller_raises_p_when_d_overfits_and_lowers_it_otherwise():
    pipe = AugmentPipe("bgc")
    controller = AdaptiveAugment(pipe, target=0.6, interval=4, speed_kimg=500)
    confident = torch.ones(32, 1)  # sign(D(real)) = +1 everywhere: r_t = 1 > 0.6
    for _ in range(3):
        controller.observe(confident)
    assert pipe.p == 0.0  # adjusted only every 4 minibatches
    controller.observe(confident)
    assert controller.last_rt == 1.0 and pipe.p == pytest.approx(4 * 32 / 500_000)
    for _ in range(4 * 4000):  # 500k images of an overfitting D take p from 0 to 1, and no further
        controller.observe(confident)
    assert pipe.p == 1.0
    unsure = torch.tensor([[1.0], [-1.0], [-1.0], [1.0]] * 8)  # r_t = 0 < 0.6
    for _ in range(4):
        controller.observe(unsure)
    assert controller.last_rt == 0.0 and pipe.p == pytest.approx(1 - 4 * 32 / 500_000)
    restored = AdaptiveAugment(AugmentPipe("bgc"), target=0.6)
    restored.load_state_dict(state_from_bytes(*state_to_bytes(controller.state_dict())))
    assert restored.p == pipe.p and restored.state_dict() == controller.state_dict()
    fixed = AdaptiveAugment(AugmentPipe("bgc", p=0.3), adaptive=False)
    for _ in range(8):
        fixed.observe(confident)
    assert fixed.p == 0.3


# -- losses --------------------------------------------------------------------------------------------------------
def test_logistic_losses_are_at_chance_for_zero_logits():
    zero = torch.zeros(4, 1)
    assert float(generator_loss(zero)) == pytest.approx(math.log(2))
    assert float(discriminator_loss(zero, zero)) == pytest.approx(2 * math.log(2))
    assert float(discriminator_loss(torch.full((4, 1), 5.0), torch.full((4, 1), -5.0))) < 0.02


def test_r1_is_zero_for_a_constant_discriminator_and_the_gradient_norm_otherwise():
    x = torch.randn(3, 3, 8, 8, requires_grad=True)
    bias = torch.nn.Parameter(torch.tensor(0.7))
    assert torch.equal(r1_penalty(bias.expand(3, 1), x), torch.zeros(3))
    assert torch.equal(r1_penalty(x.sum(dim=[1, 2, 3])[:, None] * 0 + bias, x), torch.zeros(3))
    weights = torch.randn(3, 8, 8)
    penalty = r1_penalty((x * weights).sum(dim=[1, 2, 3])[:, None], x)
    assert torch.allclose(penalty, weights.square().sum().expand(3))
    nonlinear = r1_penalty((x.square() * weights).sum(dim=[1, 2, 3])[:, None], x)
    assert (nonlinear > 0).all() and nonlinear.requires_grad  # double backprop: the penalty trains D


def test_path_length_regulariser_updates_its_mean_and_trains_g():
    backend = tiny_backend(1)
    regulariser = PathLengthRegularizer(decay=0.5)
    generator = torch.Generator().manual_seed(0)
    ws = backend.G.styles(torch.randn(4, backend.config.z_dim))
    penalty = regulariser(backend.G.synthesis(ws, generator=generator), ws, generator)
    assert penalty.shape == (4,) and float(regulariser.mean) > 0
    first_mean = float(regulariser.mean)
    penalty.mean().backward()
    assert backend.G.synthesis.blocks[-1].layers[0].conv.weight.grad.abs().sum() > 0
    ws = backend.G.styles(torch.randn(4, backend.config.z_dim))
    regulariser(backend.G.synthesis(ws, generator=generator), ws, generator)
    assert float(regulariser.mean) != first_mean


# -- training --------------------------------------------------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.progress: list[tuple[int, dict[str, float]]] = []
        self.saved: dict[int, tuple[bytes, bytes]] = {}

    def on_progress(self, step: int, total: int, metrics: dict[str, float]) -> None:
        self.progress.append((step, metrics))

    def save_checkpoint(self, step: int, state: dict) -> None:
        self.saved[step] = state_to_bytes(state)  # pickle-free, as the service stores it

    def latest(self) -> dict | None:
        return state_from_bytes(*self.saved[max(self.saved)]) if self.saved else None


def test_training_with_the_generic_loop_learns_to_discriminate_and_moves_p():
    backend = tiny_backend(32, learning_rate=0.005, ada_kimg=0.5, r1_interval=4)
    initial = {k: v.clone() for k, v in backend.G.state_dict().items()}
    initial_ema = backend.G_ema.synthesis.blocks[-1].torgb.conv.weight.clone()
    recorder = Recorder()
    result = train(backend, blobs(16), seed=0, on_progress=recorder.on_progress)
    assert result.step == 32 and not result.interrupted
    metrics = [m for _, m in recorder.progress]
    assert all(math.isfinite(v) for m in metrics for v in m.values())
    d_losses = [m["loss_D"] for m in metrics]
    assert np.mean(d_losses[-8:]) < min(d_losses[0], 2 * math.log(2)) - 0.2, d_losses  # D separates real/fake
    assert {"r1_penalty", "pl_penalty"} <= {k for m in metrics for k in m}  # both lazy regularisers ran
    assert metrics[-1]["augment_p"] > 0 and backend.augment_p > 0  # r_t above target: p rose
    changed = [k for k, v in backend.G.state_dict().items() if not torch.equal(v, initial[k])]
    assert "mapping.w_avg" in changed and len(changed) > len(initial) // 2
    assert not torch.equal(backend.G_ema.synthesis.blocks[-1].torgb.conv.weight, initial_ema)
    assert backend.G_ema.mapping.w_avg.abs().sum() > 0  # the tracked mean w reaches the sampling copy


def _pooled_features(images: np.ndarray) -> np.ndarray:
    """A fixed feature map for a Frechet distance: 4x4 average-pooled RGB in [0, 1] (48 numbers per image)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().permute(0, 3, 1, 2) / 255
    return torch.nn.functional.avg_pool2d(x, 4).flatten(1).double().numpy()


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(
        ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a + cov_b - 2 * linalg.sqrtm(cov_a @ cov_b).real)
    )


def test_a_tiny_run_on_phantom_melanomas_learns():
    from PIL import Image
    from skingenbench.services.data.core.phantom import PhantomConfig, render_phantom

    rng, phantom = np.random.default_rng(0), PhantomConfig(width=64, height=64)
    data = [
        (
            np.array(
                Image.fromarray(render_phantom("MEL", rng, phantom).image).resize((16, 16), Image.BILINEAR)
            ),
            0,
        )
        for _ in range(64)
    ]
    real = _pooled_features(np.stack([image for image, _ in data]))
    backend = tiny_backend(48, batch_size=8, learning_rate=0.005, ema_kimg=0.05)
    seeds = list(range(64))
    untrained = _frechet(_pooled_features(backend.sample(seeds, SamplerOptions())), real)
    train(backend, data, seed=0)
    trained = _frechet(_pooled_features(backend.sample(seeds, SamplerOptions())), real)
    # Measured: ~4.9 untrained, ~0.9 after 40 steps, ~0.5 after 80; two real sets of 64 differ by ~0.03.
    assert trained < 0.3 * untrained, (untrained, trained)


def test_ema_half_life_ramps_up_with_the_images_seen():
    ramped = tiny_backend(2, ema_kimg=0.1, ema_rampup=0.05)
    metrics = ramped.train_step(images_tensor(4))
    assert metrics["ema_beta"] == 0.5 ** (4 / (4 * 0.05))  # half-life 0.05 x 4 images seen, not 100
    assert metrics["ema_beta"] < 1e-5 and torch.allclose(
        ramped.G_ema.synthesis.blocks[0].const, ramped.G.synthesis.blocks[0].const, atol=1e-4
    )
    assert ramped.train_step(images_tensor(4))["ema_beta"] == 0.5 ** (4 / (8 * 0.05))
    steady = tiny_backend(1, ema_kimg=0.1, ema_rampup=0.0)
    assert steady.train_step(images_tensor(4))["ema_beta"] == 0.5 ** (4 / 100)


def test_resume_after_a_kill_continues_bit_exactly_including_ada_p():
    data = blobs(10)  # 10 images in batches of 4: batches span epochs
    # p starts at 0.5 so augmentations run from the first step; the controller moves it by 0.16 every 4 steps.
    overrides = {"augment_p": 0.5, "ada_kimg": 0.1, "r1_interval": 3, "pl_interval": 2}
    uninterrupted = tiny_backend(9, **overrides)
    reference = Recorder()
    train(uninterrupted, data, seed=3, on_progress=reference.on_progress)

    class Killed(Exception):
        pass

    first_life = tiny_backend(9, **overrides)
    recorder = Recorder()

    def die_after_step_6(step, total, metrics):
        recorder.on_progress(step, total, metrics)
        if step == 6:
            raise Killed

    with pytest.raises(Killed):
        train(
            first_life,
            data,
            seed=3,
            on_progress=die_after_step_6,
            save_checkpoint=recorder.save_checkpoint,
            checkpoint_every=5,
        )
    assert sorted(recorder.saved) == [5]
    checkpoint_p = recorder.latest()["backend"]["ada"]["p"]
    assert checkpoint_p in (
        pytest.approx(0.34),
        pytest.approx(0.66),
    )  # the controller acted before the checkpoint
    del first_life

    second_life = tiny_backend(9, **overrides)
    resumed = Recorder()
    result = train(
        second_life, data, seed=3, on_progress=resumed.on_progress, load_checkpoint=recorder.latest
    )
    assert result.resumed_from == 5 and result.step == 9

    def measured(progress):  # every metric but the wall-clock throughput
        return [{k: v for k, v in m.items() if k != "images_per_second"} for _, m in progress]

    assert measured(resumed.progress) == measured(
        [(s, m) for s, m in reference.progress if s > 5]
    )  # bit-exact
    final, expected = second_life.state(), uninterrupted.state()
    for part in ("G", "D", "G_ema"):
        for name, tensor in expected[part].items():
            assert torch.equal(final[part][name], tensor), (part, name)
    for index, moments in expected["opt_D"]["state"].items():
        assert torch.equal(final["opt_D"]["state"][index]["exp_avg_sq"], moments["exp_avg_sq"])
    assert final["ada"] == expected["ada"] and torch.equal(final["pl_mean"], expected["pl_mean"])
    assert torch.equal(final["rng"], expected["rng"]) and final["nimg"] == expected["nimg"] == 36


def test_load_state_refuses_another_model_and_sampling_only_refuses_training():
    trained = tiny_backend(2)
    trained.train_step(images_tensor(4))
    state = state_from_bytes(*state_to_bytes(trained.state()))
    other = tiny_backend(2, channel_max=16)
    with pytest.raises(FailedPrecondition, match="channel_max"):
        other.load_state(state)
    with pytest.raises(FailedPrecondition, match="not a StyleGAN2-ADA checkpoint"):
        trained.load_state({"format": "something else"})
    sampler = tiny_backend(0)
    with pytest.raises(FailedPrecondition, match="sampling only"):
        sampler.train_step(images_tensor(4))
    with pytest.raises(InvalidArgument, match="condition maps"):
        trained.train_step(images_tensor(4), conditions=torch.zeros(4, 1, 16, 16))


# -- sampling ----------------------------------------------------------------------------------------------------------
def test_sampling_is_deterministic_per_seed_and_independent_of_the_batch():
    backend = tiny_backend(1)
    backend.train_step(images_tensor(4))  # G_ema now differs from the initialisation
    seeds = [5, 6, 7, 8, 9]
    options = SamplerOptions(truncation_psi=0.7, batch_size=5)
    batched = backend.sample(seeds, options)
    assert batched.shape == (5, 16, 16, 3) and batched.dtype == np.uint8
    assert np.array_equal(backend.sample(seeds, options), batched)
    for size in (1, 2):
        other = backend.sample(seeds, SamplerOptions(truncation_psi=0.7, batch_size=size)).astype(int)
        difference = np.abs(other - batched)
        assert (
            difference.max() <= 1 and (difference > 0).mean() < 0.01
        )  # float rounding of batched kernels only
    assert not np.array_equal(batched[0], batched[1])
    const = backend.sample(seeds, SamplerOptions(sampler="stylegan_const", truncation_psi=0.7))
    assert not np.array_equal(const, batched)  # random vs fixed noise inputs

    # A sampling-only backend restored from the checkpoint draws the same images from G_ema.
    restored = tiny_backend(0)
    restored.load_state(state_from_bytes(*state_to_bytes(backend.state())))
    assert np.array_equal(restored.sample(seeds, options), batched)


def test_class_conditional_sampling_and_refused_options():
    conditional = tiny_backend(0, num_classes=3)
    same_seed = conditional.sample([4, 4, 4], SamplerOptions(), {"class": [0, 1, 2]})
    assert not np.array_equal(same_seed[0], same_seed[1]) and not np.array_equal(same_seed[1], same_seed[2])
    assert np.array_equal(conditional.sample([4], SamplerOptions(), {"class": 1})[0], same_seed[1])
    with pytest.raises(InvalidArgument, match="labels"):
        conditional.sample([1], SamplerOptions())
    with pytest.raises(InvalidArgument, match=r"\[0, 3\)"):
        conditional.sample([1], SamplerOptions(), {"class": 3})
    unconditional = tiny_backend(0)
    for options, field in (
        (SamplerOptions(steps=5), "steps"),
        (SamplerOptions(eta=0.5), "eta"),
        (SamplerOptions(sampler="ddim"), "sampler"),
    ):
        with pytest.raises(InvalidArgument, match=field):
            unconditional.sample([0], options)
    with pytest.raises(InvalidArgument, match="unconditional"):
        unconditional.sample([0], SamplerOptions(), {"class": 0})
    with pytest.raises(InvalidArgument, match="seed"):
        unconditional.sample([-1], SamplerOptions())


def test_resolved_options_record_the_sampler_and_batch_size():
    backend = tiny_backend(0)
    resolved = backend.resolve_options(SamplerOptions(truncation_psi=0.8))
    assert resolved == SamplerOptions(sampler="stylegan", truncation_psi=0.8, batch_size=4)
    assert backend.resolve_options(None).truncation_psi == TINY.default_truncation_psi
    assert StyleGAN2ADABackend(PAPER, "cpu").resolve_options(None).truncation_psi == 0.8


def test_default_truncation_comes_from_the_config():
    backend = tiny_backend(0, default_truncation_psi=0.0, noise_mode="const")
    with torch.no_grad():
        backend.G_ema.mapping.w_avg.normal_()
    defaults = backend.sample([0, 1])  # options=None: the config's psi (0 here) and noise mode
    assert np.array_equal(defaults[0], defaults[1])
    literal = backend.sample([0, 1], SamplerOptions(truncation_psi=1.0, sampler="stylegan_const"))
    assert not np.array_equal(literal[0], literal[1])


def test_save_pretrained_and_init_from_round_trip(tmp_path):
    trained = tiny_backend(1)
    trained.train_step(images_tensor(4))
    trained.save_pretrained(tmp_path / "model")
    loaded = StyleGAN2ADABackend(tiny_config(), "cpu")
    loaded.build(1, init_from=str(tmp_path / "model"))
    assert np.array_equal(loaded.sample([3, 4], SamplerOptions()), trained.sample([3, 4], SamplerOptions()))
    transfer = StyleGAN2ADABackend(tiny_config(), "cpu")
    transfer.build(7, total_steps=3, init_from=str(tmp_path / "model"))
    for name, tensor in trained.D.state_dict().items():
        assert torch.equal(transfer.D.state_dict()[name], tensor)
    with pytest.raises(FailedPrecondition, match="channel_base"):
        StyleGAN2ADABackend(tiny_config(channel_base=128), "cpu").build(0, init_from=str(tmp_path / "model"))
    with pytest.raises(InvalidArgument, match="init_from"):
        StyleGAN2ADABackend(tiny_config(), "cpu").build(0, init_from=str(tmp_path))


def test_parameter_counts_of_the_profiles():
    tiny = StyleGAN2ADABackend(TINY, "cpu")
    tiny.build(0, total_steps=1)
    assert 20_000 < parameter_count(tiny.G) < 100_000 and 20_000 < parameter_count(tiny.D) < 100_000
    paper = StyleGAN2ADABackend(dataclasses.replace(PAPER), "cpu")
    paper.build(0)  # sampling only: G_ema, no D
    assert 20e6 < parameter_count(paper.G_ema) < 26e6 and paper.G_ema.num_ws == 14
