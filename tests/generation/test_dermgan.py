"""DermGAN backend: semantic maps, networks, losses, conditioning, controllability, training and resume."""

from __future__ import annotations

import io
import math
import tempfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skingenbench.services.core.checkpoint import state_from_bytes, state_to_bytes
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.core.imaging.skin_tone import estimate_ita, skin_type_from_ita
from skingenbench.services.core.registry import config_from_dict
from skingenbench.services.generation.core.backend import SamplerOptions
from skingenbench.services.generation.core.dermgan import (
    ITA_BINS,
    PROFILES,
    ConditionDistribution,
    ConditionRecord,
    DermGANBackend,
    DermGANConfig,
    MapLayout,
    MapParams,
)
from skingenbench.services.generation.core.dermgan.conditioning import draw_params
from skingenbench.services.generation.core.dermgan.controllability import (
    agreement,
    backend_renderer,
    grid,
    measure_controllability,
)
from skingenbench.services.generation.core.dermgan.losses import (
    discriminator_loss,
    generator_loss,
    lesion_weighted_l1,
)
from skingenbench.services.generation.core.dermgan.networks import PatchDiscriminator, UNetGenerator
from skingenbench.services.generation.core.dermgan.semantic_map import (
    lesion_mask,
    map_from_mask,
    map_from_params,
    paint_map,
    read_map,
    skin_colour,
)
from skingenbench.services.generation.core.sampling import sample_images
from skingenbench.services.generation.core.training import train

LAYOUT = MapLayout()
MEL_REQUEST = {
    "label": "MEL",
    "lesion_area_fraction": 0.15,
    "center_x": 0.5,
    "center_y": 0.5,
    "ita_degrees": 30.0,
}


def tiny_backend(total_steps: int = 0, seed: int = 0, **overrides) -> DermGANBackend:
    config = config_from_dict(
        DermGANConfig, PROFILES["tiny"], {"train_steps": max(total_steps, 1), **overrides}
    )
    backend = DermGANBackend(config, device="cpu")
    backend.build(seed, total_steps=total_steps)
    return backend


def painted_examples(count: int, size: int = 32, seed: int = 0) -> list[tuple[np.ndarray, int, np.ndarray]]:
    """(image, class index, map) triples whose image is the map painted flat: a mapping G can learn fast."""
    rng = np.random.default_rng(seed)
    items = []
    for index in range(count):
        params = MapParams(
            CLASSES[index % len(CLASSES)],
            float(rng.uniform(0.05, 0.3)),
            float(rng.uniform(0.35, 0.65)),
            float(rng.uniform(0.35, 0.65)),
            float(rng.uniform(-40, 60)),
        )
        semantic = map_from_params(params, size, LAYOUT)
        items.append((paint_map(semantic, LAYOUT), CLASSES.index(params.label), semantic))
    return items


@pytest.fixture(scope="module")
def phantom_examples():
    """48 phantom dermoscopy images, preprocessed ('basic', tiny: 64 px) with lesion masks and ITA."""
    from skingenbench.services.data.operations import import_source
    from skingenbench.services.platform.manifest_io import read_manifest
    from skingenbench.services.platform.store import LocalFolderStore
    from skingenbench.services.preprocessing.batch import PreprocessSpec, preprocess_manifest

    with tempfile.TemporaryDirectory() as root:
        store = LocalFolderStore(root)
        ref = import_source(store, "phantom", options={"count": 48, "width": 96, "height": 72}, seed=0).ref
        out = preprocess_manifest(
            store, ref.uri, PreprocessSpec("basic", "tiny"), input_sha256=ref.sha256, workers=1
        )
        manifest = read_manifest(store, out.ref.uri, out.ref.sha256)

        def load(key: str) -> np.ndarray:
            return np.array(Image.open(io.BytesIO(store.get_bytes(key))))

        return [
            (load(item.key), load(item.objects["mask_lesion"].key), item.meta.get("ita_degrees"), item.label)
            for item in manifest.items
        ]


@pytest.fixture(scope="module")
def trained(phantom_examples):
    """A tiny DermGAN trained for 100 steps on the phantom set with the generic loop, and its progress."""
    torch.set_num_threads(1)
    backend = DermGANBackend(
        config_from_dict(DermGANConfig, PROFILES["tiny"], {"train_steps": 100}), device="cpu"
    )
    dataset, skipped = backend.training_set(phantom_examples)
    backend.build(0, total_steps=100)
    progress: list[dict[str, float]] = []
    train(backend, dataset, seed=0, on_progress=lambda step, total, metrics: progress.append(metrics))
    return backend, progress, len(dataset), skipped


# -- semantic maps ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        MapParams("MEL", 0.12, 0.5, 0.5, 30.0),
        MapParams("NV", 0.25, 0.4, 0.6, -40.0, aspect_ratio=1.8, orientation_degrees=35.0),
        MapParams("SCC", 0.06, 0.62, 0.38, 55.0, aspect_ratio=1.3, irregularity=0.4, shape_seed=7),
        MapParams(
            "BCC", 0.3, 0.45, 0.55, 5.0, aspect_ratio=2.5, orientation_degrees=100.0, irregularity=0.25
        ),
    ],
)
@pytest.mark.parametrize("resolution", [32, 64])
def test_map_from_parameters_has_requested_area_centre_class_and_skin(params, resolution):
    semantic = map_from_params(params, resolution, LAYOUT)
    assert semantic.shape == (resolution, resolution, LAYOUT.channels) and semantic.dtype == np.float32
    mask = lesion_mask(params, resolution)
    assert abs(mask.mean() - params.lesion_area_fraction) <= 1.0 / resolution**2
    ys, xs = np.nonzero(mask)
    assert abs(xs.mean() + 0.5 - params.center_x * resolution) < 1.0
    assert abs(ys.mean() + 0.5 - params.center_y * resolution) < 1.0
    # One-hot: the class's channel is the lesion, every other class channel is empty.
    one_hot = semantic[..., LAYOUT.class_channels]
    index = CLASSES.index(params.label)
    np.testing.assert_array_equal(one_hot[..., index], mask.astype(np.float32))
    assert not np.delete(one_hot, index, axis=2).any()
    assert not semantic[..., LAYOUT.noise_index].any()  # filled by the backend from a seed
    # The skin channels carry the requested tone: measure it the way preprocessing does.
    skin = np.clip((semantic[..., :3] + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    assert abs(estimate_ita(skin, mask) - params.ita_degrees) < 2.0
    read_mask, label, _ = read_map(semantic, LAYOUT)
    assert label == params.label and (read_mask == mask).all()


def test_skin_colour_follows_ita_over_the_whole_range():
    itas = np.linspace(-60, 70, 14)
    measured = [
        estimate_ita(np.tile((skin_colour(ita) * 255 + 0.5).astype(np.uint8), (16, 16, 1))) for ita in itas
    ]
    assert np.abs(np.array(measured) - itas).max() < 2.0
    assert np.all(np.diff([skin_colour(ita).mean() for ita in itas]) > 0)  # higher ITA, lighter skin


def test_map_from_a_real_mask_resizes_it_and_refuses_empty_ones():
    mask = np.zeros((64, 64), np.uint8)
    mask[20:44, 16:40] = 255  # 24x24 at 64 px -> 12x12 at 32 px
    semantic = map_from_mask(mask, 12.0, "BKL", 32, LAYOUT)
    read_mask, label, skin = read_map(semantic, LAYOUT)
    assert label == "BKL" and read_mask.sum() == 144 and read_mask[10:22, 8:20].all()
    np.testing.assert_allclose(skin, skin_colour(12.0), atol=1e-6)
    with pytest.raises(InvalidArgument):
        map_from_mask(np.zeros((64, 64)), 12.0, "BKL", 32, LAYOUT)
    with pytest.raises(InvalidArgument):
        map_from_mask(mask, None, "BKL", 32, LAYOUT)
    with pytest.raises(InvalidArgument):
        map_from_mask(mask, 12.0, "XYZ", 32, LAYOUT)


def test_condition_record_measures_a_mask():
    params = MapParams("NV", 0.2, 0.4, 0.6, 20.0, aspect_ratio=2.0, orientation_degrees=30.0)
    record = ConditionRecord.from_mask(lesion_mask(params, 64), 20.0, "NV")
    assert record.lesion_area_fraction == pytest.approx(0.2, abs=1e-3)
    assert (record.center_x, record.center_y) == pytest.approx((0.4, 0.6), abs=0.01)
    assert record.aspect_ratio == pytest.approx(2.0, rel=0.1)


# -- networks and losses --------------------------------------------------------------------------------------
def test_generator_shape_range_and_no_transposed_convolutions():
    generator = UNetGenerator(LAYOUT.channels, base_width=8, max_width=32, levels=5)
    maps = torch.randn(3, LAYOUT.channels, 32, 32)
    out = generator(maps, torch.Generator().manual_seed(0))
    assert out.shape == (3, 3, 32, 32) and out.min() >= -1 and out.max() <= 1
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in generator.modules())
    assert sum(isinstance(m, torch.nn.Upsample) for m in generator.modules()) == 5
    # The paper layout: 8 halvings take 256 px to 1x1 and back (narrow here to stay cheap).
    paper = UNetGenerator(LAYOUT.channels, base_width=2, max_width=8, levels=8)
    assert paper(torch.randn(1, LAYOUT.channels, 256, 256)).shape == (1, 3, 256, 256)


def test_patchgan_outputs_a_patch_grid():
    critic = PatchDiscriminator(LAYOUT.channels - 1 + 3, base_width=4, layers=3)
    assert critic(torch.randn(2, LAYOUT.channels + 2, 256, 256)).shape == (2, 1, 30, 30)  # Pix2Pix's 70x70
    tiny = PatchDiscriminator(11, base_width=4, layers=2)
    assert tiny(torch.randn(2, 11, 32, 32)).shape == (2, 1, 6, 6)


def test_l1_counts_the_lesion_more():
    real = torch.zeros(1, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1.0
    inside, outside = real.clone(), real.clone()
    inside[..., 1, 1] = 0.5
    outside[..., 6, 6] = 0.5
    weight = 5.0
    assert lesion_weighted_l1(inside, real, mask, weight) == pytest.approx(
        weight * lesion_weighted_l1(outside, real, mask, weight)
    )
    fake = torch.rand(1, 3, 8, 8)
    assert lesion_weighted_l1(fake, real, mask, 1.0) == pytest.approx(F.l1_loss(fake, real).item())
    total, parts = generator_loss(torch.zeros(1, 1, 4, 4), inside, real, mask, 100.0, weight)
    assert total.item() == pytest.approx(math.log(2) + 100 * parts["loss_l1"].item(), rel=1e-5)
    assert discriminator_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)).item() == pytest.approx(
        math.log(2)
    )


# -- configs ------------------------------------------------------------------------------------------------------
def test_profiles_and_config_validation():
    paper = PROFILES["paper"]
    assert (paper.resolution, paper.learning_rate, paper.adam_beta1, paper.adam_beta2, paper.lambda_l1) == (
        256,
        2e-4,
        0.5,
        0.999,
        100.0,
    )
    assert paper.lesion_l1_weight > 1 and 1 <= paper.batch_size <= 16 and paper.generator_levels == 8
    PROFILES["tiny"].validate()
    for bad in (
        {"generator_levels": 6},
        {"discriminator_layers": 4},
        {"classes": ["MEL", "XYZ"]},
        {"gan_mode": "wgan"},
        {"train_epochs": 3},
        {"lesion_l1_weight": 0.5},
    ):
        with pytest.raises(InvalidArgument):
            config_from_dict(DermGANConfig, PROFILES["tiny"], bad)
    assert config_from_dict(DermGANConfig, PROFILES["tiny"], {"classes": ["MEL", "NV"]}).layout.channels == 6


# -- sampling and conditioning ----------------------------------------------------------------------------------------
def test_one_map_different_seeds_differ_and_same_seed_repeats():
    backend = tiny_backend()
    one_map = {"maps": map_from_params(MapParams("MEL", 0.15, 0.5, 0.5, 30.0), 32, LAYOUT)}
    images = backend.sample([1, 2, 1], conditioning=one_map)
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[0], images[2])
    assert np.abs(images[0].astype(int) - images[1]).mean() > 1.0
    again = backend.sample([1], SamplerOptions(batch_size=1), one_map)[0]
    assert np.abs(again.astype(int) - images[0]).max() <= 1  # batch composition: rounding at most
    # Parameters without a shape: the border is drawn from the seed too, the rest is as requested.
    first, second = backend.resolve_conditioning([1, 2], MEL_REQUEST)
    assert first.shape_seed != second.shape_seed and first.lesion_area_fraction == second.lesion_area_fraction


def test_conditioning_forms_agree_and_bad_requests_are_refused():
    backend = tiny_backend()
    seeds = [10, 11, 12, 13]
    per_image = [dict(MEL_REQUEST, ita_degrees=ita) for ita in (-20.0, 0.0, 20.0, 40.0)]
    as_arrays = dict(MEL_REQUEST, ita_degrees=np.array([-20.0, 0.0, 20.0, 40.0]))
    from_list = backend.sample(seeds, conditioning=per_image)
    np.testing.assert_array_equal(from_list, backend.sample(seeds, conditioning=as_arrays))
    batched = np.concatenate(
        [b.images for b in sample_images(backend, 4, 10, conditioning=as_arrays, batch_size=2)]
    )
    assert np.abs(batched.astype(int) - from_list).max() <= 1
    params = backend.resolve_conditioning(seeds, per_image)
    assert [p.ita_degrees for p in params] == [-20.0, 0.0, 20.0, 40.0]
    # Recorded parameters rebuild the same images; explicit maps too.
    np.testing.assert_array_equal(
        backend.sample(seeds, conditioning=[p.to_dict() for p in params]), from_list
    )
    np.testing.assert_array_equal(
        backend.sample(seeds, conditioning={"maps": backend.condition_maps(seeds, per_image)}), from_list
    )
    assert (
        backend.resolve_conditioning(
            [1], {"class": "NV", **{k: v for k, v in MEL_REQUEST.items() if k != "label"}}
        )[0].label
        == "NV"
    )
    for bad in (
        {"label": "XYZ"},
        {"colour": 3},
        dict(MEL_REQUEST, balance_skin_tone=True),
        dict(MEL_REQUEST, lesion_area_fraction=1.5),
        dict(MEL_REQUEST, ita_degrees=[1.0, 2.0]),
    ):
        with pytest.raises(InvalidArgument):
            backend.sample(seeds, conditioning=bad)
    with pytest.raises(FailedPrecondition):  # no training distribution to draw the missing size from
        backend.sample([1], conditioning={"label": "MEL"})
    for options in (
        SamplerOptions(truncation_psi=0.7),
        SamplerOptions(sampler="ddim"),
        SamplerOptions(steps=5),
    ):
        with pytest.raises(InvalidArgument):
            backend.sample([1], options, MEL_REQUEST)


def test_balance_skin_tone_draws_each_ita_category_equally():
    backend = tiny_backend()
    request = {k: v for k, v in MEL_REQUEST.items() if k != "ita_degrees"}
    params = backend.resolve_conditioning(list(range(3000)), dict(request, balance_skin_tone=True))
    types = [skin_type_from_ita(p.ita_degrees) for p in params]
    shares = {name: types.count(name) / len(types) for name, _, _ in ITA_BINS}
    assert set(types) == set(shares)
    assert all(abs(share - 1 / 6) < 0.03 for share in shares.values()), shares


def test_training_distribution_reproduces_class_proportions_and_class_conditional_sizes():
    rng = np.random.default_rng(0)
    wanted = {"NV": 0.5, "BCC": 0.25, "BKL": 0.15, "MEL": 0.1, "SCC": 0.0}
    records = []
    for label, share in wanted.items():
        for _ in range(int(share * 200)):
            area = 0.3 if label == "MEL" else 0.05  # melanomas are the big ones in this set
            records.append(
                ConditionRecord(label, area, float(rng.uniform(0.4, 0.6)), 0.5, float(rng.uniform(0, 50)))
            )
    distribution = ConditionDistribution(records)
    assert distribution.class_proportions() == pytest.approx(wanted)
    draws = [distribution.draw(np.random.default_rng([seed, 1])) for seed in range(3000)]
    drawn = {name: sum(d.label == name for d in draws) / len(draws) for name in wanted}
    assert drawn == pytest.approx(wanted, abs=0.03)
    melanomas = [distribution.draw(np.random.default_rng(seed), {"label": "MEL"}) for seed in range(200)]
    assert all(0.2 < m.lesion_area_fraction < 0.45 for m in melanomas)
    assert all(-10.0 <= m.ita_degrees <= 60.0 for m in melanomas)  # 0-50 and a few degrees of jitter
    fixed = draw_params(
        np.random.default_rng(0), {"label": "NV", "ita_degrees": -45.0}, distribution=distribution
    )
    assert fixed.label == "NV" and fixed.ita_degrees == -45.0 and fixed.lesion_area_fraction < 0.1


# -- controllability --------------------------------------------------------------------------------------------------
def oracle(seeds: list[int], params: list[MapParams]) -> np.ndarray:
    """A perfect generator: paints each requested map's colours directly."""
    return np.stack([paint_map(map_from_params(p, 32, LAYOUT), LAYOUT) for p in params])


def test_controllability_measurement_is_near_perfect_for_an_oracle():
    requests = grid(
        list(CLASSES), [0.05, 0.15, 0.3], [-45.0, 0.0, 30.0, 60.0], centres=[(0.42, 0.5), (0.58, 0.45)]
    )
    report = measure_controllability(oracle, requests, classify=lambda images: ["MEL"] * len(images))
    for name, result in report.attributes.items():
        assert result.failures == 0 and result.count == len(requests), name
        assert result.pearson > 0.99, (name, result)
    assert report.attributes["lesion_area_fraction"].mean_absolute_error < 0.005
    assert report.attributes["center_x"].mean_absolute_error < 0.01
    assert report.attributes["ita_degrees"].mean_absolute_error < 1.5
    assert report.class_accuracy == pytest.approx(1 / 5) and set(report.per_class) == set(CLASSES)
    assert len(report.rows) == len(requests) and report.to_dict()["attributes"]["ita_degrees"][
        "count"
    ] == len(requests)
    # And the measurement can fail: a generator that ignores the request scores badly.
    blank = measure_controllability(
        lambda seeds, params: oracle(seeds, [requests[0]] * len(params)), requests
    )
    assert blank.attributes["ita_degrees"].mean_absolute_error > 10
    assert math.isnan(blank.attributes["lesion_area_fraction"].pearson)
    assert agreement([1.0, 2.0], [None, None]).failures == 2


# -- training ----------------------------------------------------------------------------------------------------------
def test_training_refuses_missing_conditions_and_learns_on_painted_maps():
    backend = tiny_backend(24, learning_rate=2e-3)
    with pytest.raises(InvalidArgument):
        backend.train_step(torch.zeros(2, 3, 32, 32))
    history: list[dict[str, float]] = []
    train(
        backend,
        painted_examples(16),
        seed=0,
        on_progress=lambda step, total, metrics: history.append(metrics),
    )
    l1 = [metrics["loss_l1"] for metrics in history]
    assert len(l1) == 24 and np.mean(l1[-6:]) < 0.5 * np.mean(l1[:4]), l1
    assert {"loss", "loss_d", "loss_g_gan", "loss_l1", "lr", "d_real_logit", "d_fake_logit"} <= set(
        history[-1]
    )
    assert history[-1]["lr"] < history[0]["lr"]  # the linear decay of the second half


def test_tiny_run_on_phantom_data_is_controllable(trained):
    backend, progress, size, skipped = trained
    assert size + skipped == 48 and size >= 40
    assert np.mean([m["loss_l1"] for m in progress[-10:]]) < 0.6 * np.mean(
        [m["loss_l1"] for m in progress[:5]]
    )
    requests = grid(
        ["MEL", "NV"], [0.05, 0.12, 0.25], [-20.0, 15.0, 50.0], centres=[(0.42, 0.45), (0.58, 0.55)]
    )
    report = measure_controllability(backend_renderer(backend), requests, seed=100)
    area, ita = report.attributes["lesion_area_fraction"], report.attributes["ita_degrees"]
    assert area.failures <= 2 and area.pearson > 0.8, area
    assert ita.failures == 0 and ita.pearson > 0.9 and ita.mean_absolute_error < 8.0, ita
    assert report.attributes["center_x"].pearson > 0.5, report.attributes["center_x"]
    # Noise survives training: one map, several images.
    images = backend.sample(list(range(6)), conditioning=MEL_REQUEST).astype(int)
    assert np.abs(images[1:] - images[:1]).mean() > 0.5


def test_sampling_from_the_training_distribution(trained, phantom_examples):
    backend = trained[0]
    params = backend.resolve_conditioning(list(range(2000)))
    expected = backend.conditions.class_proportions()
    drawn = {name: sum(p.label == name for p in params) / len(params) for name in CLASSES}
    assert drawn == pytest.approx(expected, abs=0.03)
    real_itas = [ita for _, _, ita, _ in phantom_examples if ita is not None]
    drawn_itas = [p.ita_degrees for p in params]
    assert min(real_itas) - 8 < min(drawn_itas) and max(drawn_itas) < max(real_itas) + 8
    assert backend.sample([0, 1], conditioning={"label": "SCC"}).shape == (2, 32, 32, 3)


def test_sampling_only_copy_and_pretrained_folder_give_the_same_images(trained, tmp_path):
    backend = trained[0]
    expected = backend.sample([3, 4], conditioning={"balance_skin_tone": True})
    sampler = tiny_backend(0)
    sampler.load_state(state_from_bytes(*state_to_bytes(backend.state())))
    np.testing.assert_array_equal(sampler.sample([3, 4], conditioning={"balance_skin_tone": True}), expected)
    with pytest.raises(FailedPrecondition):
        sampler.state()
    backend.save_pretrained(tmp_path)
    reloaded = DermGANBackend(backend.config, device="cpu")
    reloaded.build(0, init_from=str(tmp_path))
    np.testing.assert_array_equal(reloaded.sample([3, 4], conditioning={"balance_skin_tone": True}), expected)


def test_state_round_trip_resumes_exactly():
    data = painted_examples(10)
    straight = tiny_backend(6)
    train(straight, data, seed=3)

    saved: dict[int, tuple[bytes, bytes]] = {}
    first = tiny_backend(6)
    result = train(
        first,
        data,
        seed=3,
        should_stop=lambda: first.step == 3,
        save_checkpoint=lambda step, state: saved.__setitem__(step, state_to_bytes(state)),
    )
    assert result.interrupted and list(saved) == [3]
    resumed = tiny_backend(6)
    result = train(resumed, data, seed=3, load_checkpoint=lambda: state_from_bytes(*saved[3]))
    assert result.resumed_from == 3 and resumed.step == 6
    for name in ("generator", "discriminator"):
        for (key, a), b in zip(
            getattr(straight, name).state_dict().items(),
            getattr(resumed, name).state_dict().values(),
            strict=True,
        ):
            assert torch.equal(a, b), (name, key)
    np.testing.assert_array_equal(
        straight.sample([5], conditioning=MEL_REQUEST), resumed.sample([5], conditioning=MEL_REQUEST)
    )
    other = tiny_backend(6, lambda_l1=10.0)
    with pytest.raises(FailedPrecondition):
        other.load_state(state_from_bytes(*saved[3]))
