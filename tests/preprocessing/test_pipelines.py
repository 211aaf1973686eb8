from __future__ import annotations

import dataclasses
import json
import math

import cv2
import numpy as np
import pytest
from skimage.color import rgb2lab
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.preprocessing.core.geometry import (
    GeometricAugmentation,
    apply_augmentation,
    image_seed,
    resize_image,
    resize_mask,
)
from skingenbench.services.preprocessing.core.pipeline_config import AdvancedConfig, BasicConfig
from skingenbench.services.preprocessing.core.pipeline_registry import (
    create_pipeline,
    describe,
    get_pipeline,
    list_pipelines,
    pipeline_config,
    register_pipeline,
)
from skingenbench.services.preprocessing.core.quality import mask_dice, psnr_in_region
from skingenbench.services.preprocessing.core.throughput import bench_pipeline

SKIN = (224, 172, 140)
MEASUREMENT_KEYS = {
    "lesion_area_fraction",
    "ita_degrees",
    "skin_type",
    "hair_fraction",
    "dark_field_fraction",
    "mark_fraction",
    "augmentation",
    "steps",
    "artifact_hair",  # the artifact flags (issue 18)
    "artifact_dark_corners",
    "artifact_marks",
}


def skin_ita() -> float:
    lightness, _, b_star = rgb2lab(np.array([[SKIN]], np.uint8))[0, 0]
    return math.degrees(math.atan((lightness - 50) / b_star))


def hairy_lesion(height: int = 450, width: int = 600, seed: int = 0):
    """HAM10000-sized view: textured skin, a dark elliptical lesion, eight curved 3 px dark hairs.
    Returns (image, clean image, hair mask, lesion mask)."""
    rng = np.random.default_rng(seed)
    clean = np.full((height, width, 3), SKIN, np.float32) + rng.normal(0, 3, (height, width, 1))
    lesion = np.zeros((height, width), np.uint8)
    cv2.ellipse(lesion, (width // 2, height // 2), (width // 6, height // 6), 10.0, 0, 360, 1, -1)
    clean[lesion > 0] = (110, 70, 50)
    clean = np.clip(clean, 0, 255).astype(np.uint8)
    hair = np.zeros((height, width), np.uint8)
    for _ in range(8):
        points = rng.uniform((0, 0), (width, height), (3, 2))
        t = np.linspace(0, 1, 60)[:, None]
        curve = (1 - t) ** 2 * points[0] + 2 * (1 - t) * t * points[1] + t**2 * points[2]
        cv2.polylines(hair, [curve.astype(np.int32)], False, 1, 3)
    image = clean.copy()
    image[hair > 0] = (55, 40, 30)
    return image, clean, hair > 0, lesion > 0


@pytest.fixture(scope="module")
def scene():
    return hairy_lesion()


REGISTERED = [(name, profile) for name in list_pipelines() for profile in sorted(get_pipeline(name).profiles)]


def test_registry_enumerates_basic_and_advanced_with_both_profiles():
    assert {"basic", "advanced"} <= set(list_pipelines())
    described = {entry["name"]: entry for entry in describe()}
    for name in ("basic", "advanced"):
        assert set(described[name]["profiles"]) == {"tiny", "paper"}
        assert described[name]["description"]
        assert described[name]["profiles"]["paper"]["size"] == 256
        assert described[name]["profiles"]["tiny"]["size"] == 64
    assert described["advanced"]["profiles"]["paper"]["hair_removal"]["enabled"] is True
    assert described["advanced"]["profiles"]["paper"]["mark_removal"]["remove_ruler"] is True
    json.dumps(describe())


@pytest.mark.parametrize(("name", "profile"), REGISTERED)
def test_config_round_trips_through_json(name, profile):
    config = pipeline_config(name, profile)
    restored = get_pipeline(name).config_class.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert create_pipeline(name, profile).config == config


def test_unknown_names_refused():
    with pytest.raises(InvalidArgument) as info:
        create_pipeline("fancy")
    assert "basic" in str(info.value)  # the message lists what exists
    with pytest.raises(InvalidArgument):
        create_pipeline("basic", profile="huge")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"colour": 1}, "colour"),
        ({"hair_removal": {"tresh": 5}}, "hair_removal.tresh"),
        ({"size": 0}, "size"),
        ({"size": "256"}, "size"),
        ({"size": True}, "size"),
        ({"fit": "stretch"}, "fit"),
        ({"hair_removal": {"threshold": 300.0}}, "hair_removal.threshold"),
        ({"hair_removal": {"inpaint_method": "smudge"}}, "hair_removal.inpaint_method"),
        ({"augmentation": {"hflip_probability": 1.5}}, "augmentation.hflip_probability"),
        ({"vignette": {"mode": "blur"}}, "vignette.mode"),
        ({"size": 512, "working_max_side": 256}, "working_max_side"),
    ],
)
def test_bad_config_refused_with_the_field_name(overrides, field):
    with pytest.raises(InvalidArgument) as info:
        create_pipeline("advanced", "paper", **overrides)
    assert info.value.context["field"] == field
    assert field in str(info.value)


def test_configs_are_plain_dataclasses_and_accept_sections_as_dicts():
    config = AdvancedConfig(size=128, hair_removal={"threshold": 9})
    assert dataclasses.asdict(config) == config.to_dict()
    assert config.hair_removal.threshold == 9.0 and config.hair_removal.orientations == 4
    with pytest.raises(InvalidArgument) as info:
        AdvancedConfig(hair_removal={"orientations": 0})
    assert info.value.context["field"] == "hair_removal.orientations"


def test_basic_config_refuses_advanced_sections():
    with pytest.raises(InvalidArgument):
        BasicConfig.from_dict({"hair_removal": {"enabled": True}})


def test_overrides_merge_into_the_profile():
    config = pipeline_config("advanced", "tiny", hair_removal={"threshold": 20}, size=32)
    assert config.size == 32 and config.working_max_side == 128  # tiny's value kept
    assert config.hair_removal.threshold == 20.0 and isinstance(config.hair_removal.threshold, float)
    assert config.hair_removal.kernel_fraction == AdvancedConfig().hair_removal.kernel_fraction


def test_registering_a_name_twice_fails():
    with pytest.raises(ValueError):
        register_pipeline("basic", BasicConfig, {"tiny": BasicConfig(), "paper": BasicConfig()})(object)


@pytest.mark.parametrize(("name", "profile"), REGISTERED)
def test_pipeline_output_contract(scene, name, profile):
    image, _, _, _ = scene
    result = create_pipeline(name, profile)(image, seed=3, augment=True)
    size = pipeline_config(name, profile).size
    assert result.image.shape == (size, size, 3) and result.image.dtype == np.uint8
    assert result.lesion_mask.shape == result.hair_mask.shape == (size, size)
    assert result.lesion_mask.dtype == result.hair_mask.dtype == bool
    assert set(result.measurements) == MEASUREMENT_KEYS
    json.dumps(result.measurements)
    steps = result.measurements["steps"]
    assert ("remove_hair" in steps) == (name == "advanced") and "augment" in steps


def test_measurements_on_a_known_scene(scene):
    image, _, hair, lesion = scene
    for name in ("basic", "advanced"):
        result = create_pipeline(name, "paper")(image, seed=None)
        measured = result.measurements
        assert measured["ita_degrees"] == pytest.approx(skin_ita(), abs=3.0)
        assert measured["skin_type"] == "light"
        truth = resize_mask(lesion, 256)
        assert mask_dice(truth, result.lesion_mask) > 0.85
        assert measured["lesion_area_fraction"] == pytest.approx(truth.mean(), abs=0.02)
        # of the output's view: the centre crop is taken before hair is measured
        assert measured["hair_fraction"] == pytest.approx(resize_mask(hair, 256).mean(), rel=0.5)
        assert measured["augmentation"] is None


def test_advanced_removes_hair_that_basic_keeps(scene):
    image, clean, hair, _ = scene
    target_clean, target_hair = resize_image(clean, 256), resize_mask(hair, 256)
    basic = create_pipeline("basic", "paper")(image, seed=0)
    advanced = create_pipeline("advanced", "paper")(image, seed=0)
    gain = psnr_in_region(advanced.image, target_clean, target_hair) - psnr_in_region(
        basic.image, target_clean, target_hair
    )
    assert gain > 12.0
    assert psnr_in_region(advanced.image, target_clean, ~target_hair) > 35.0


def test_augmentation_is_seeded_and_moves_masks_with_the_image(scene):
    image, _, _, _ = scene
    pipeline = create_pipeline("advanced", "tiny")
    first, again = (
        pipeline(image, seed=image_seed(1, 5), augment=True),
        pipeline(image, seed=image_seed(1, 5), augment=True),
    )
    np.testing.assert_array_equal(first.image, again.image)
    assert first.measurements == again.measurements
    other = pipeline(image, seed=image_seed(1, 6), augment=True)
    assert other.measurements["augmentation"] != first.measurements["augmentation"]
    plain = pipeline(image, seed=image_seed(1, 5), augment=False)
    drawn = GeometricAugmentation(**first.measurements["augmentation"])
    np.testing.assert_array_equal(apply_augmentation(plain.image, drawn), first.image)
    np.testing.assert_array_equal(apply_augmentation(plain.lesion_mask, drawn), first.lesion_mask)
    np.testing.assert_array_equal(apply_augmentation(plain.hair_mask, drawn), first.hair_mask)


def test_skin_tone_is_measured_before_colour_constancy(scene):
    image, _, _, _ = scene
    cast = np.clip(image * np.array([1.0, 0.9, 0.75]), 0, 255).astype(np.uint8)
    off = create_pipeline("advanced", "tiny")(cast, seed=0)
    on = create_pipeline("advanced", "tiny", color_constancy={"enabled": True})(cast, seed=0)
    assert "color_constancy" in on.measurements["steps"]
    assert not np.array_equal(on.image, off.image)
    assert on.measurements["ita_degrees"] == off.measurements["ita_degrees"]


def test_vignette_step_and_pad_fit(scene):
    image, _, _, _ = scene
    yy, xx = np.mgrid[:450, :600]
    framed = image.copy()
    framed[np.hypot(yy - 225, xx - 300) > 280] = 3
    result = create_pipeline("advanced", "tiny", vignette={"enabled": True})(framed, seed=0)
    assert "vignette_crop" in result.measurements["steps"]
    assert result.measurements["dark_field_fraction"] > 0.05
    assert result.image.min(axis=2).mean() > 100  # no black left in the output
    padded = create_pipeline("basic", "tiny", fit="pad")(image, seed=0)
    assert not padded.lesion_mask[:4].any() and padded.measurements["ita_degrees"] is not None


def test_bad_images_refused():
    pipeline = create_pipeline("basic")
    with pytest.raises(InvalidArgument):
        pipeline(np.zeros((64, 64, 3), np.float32), seed=0)
    with pytest.raises(InvalidArgument):
        pipeline(np.zeros((64, 64), np.uint8), seed=0)
    with pytest.raises(InvalidArgument):
        pipeline(np.zeros((4, 64, 3), np.uint8), seed=0)


def test_bench_pipeline_reports_a_rate_and_restores_threads(scene):
    image, _, _, _ = scene
    before = cv2.getNumThreads()
    rate = bench_pipeline("basic", [image[:100, :100]] * 2, profile="tiny")
    assert rate > 0 and cv2.getNumThreads() == before
    assert bench_pipeline("basic", [image[:100, :100]] * 2, profile="tiny", cpu_time=True) > 0
    with pytest.raises(InvalidArgument):
        bench_pipeline("basic", [])


def test_the_output_has_the_pixel_grid_of_resize_image(scene):
    """The centre crop is taken before downscaling, so an untouched output is resize_image(input): the
    grid the phantom's ground truth is resized to (downscaling first put it up to half a pixel off)."""
    image, _, _, _ = scene
    basic = create_pipeline("basic", "paper")(image, seed=0)
    np.testing.assert_array_equal(basic.image, resize_image(image, 256))
    # a vignette crop moves the output's region, so cleaning then runs on the whole view
    cropping = create_pipeline("advanced", "paper", vignette={"enabled": True})
    assert cropping._working_image(image).shape == (256, 341, 3)
    assert create_pipeline("advanced", "paper")._working_image(image).shape == (256, 256, 3)
