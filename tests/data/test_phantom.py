"""The phantom: masks that agree with the pixels, faithful skin tone, determinism, the HAM10000 layout, and
classes that a small CNN learns from structure better than a colour model does."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skingenbench.services.core.classes import CLASSES, REFERENCE_PROPORTIONS
from skingenbench.services.core.imaging.skin_tone import ita_from_lab, lightness_for_ita
from skingenbench.services.data.core.phantom import (
    ARTIFACTS,
    PhantomConfig,
    render_phantom,
    sample_lesion_params,
)
from skingenbench.services.data.core.phantom_dataset import (
    CLEAN_DIR,
    COLUMNS,
    IMAGE_DIRS,
    MASK_KINDS,
    MASKS_DIR,
    METADATA_CSV,
    class_counts,
    write_phantom_dataset,
)

NO_ARTIFACTS = {f"{name}_rate": 0.0 for name in ARTIFACTS}
ALL_ARTIFACTS = {f"{name}_rate": 1.0 for name in ARTIFACTS}
MASK_OF = {"hair": "hair", "ruler": "ruler", "ink": "ruler", "vignette": "vignette", "bubbles": "bubbles"}


def changed(sample) -> np.ndarray:
    return (sample.image != sample.clean).any(axis=-1)


# -- masks agree with the pixels -------------------------------------------------------------------------


@pytest.mark.parametrize("label", CLASSES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_image_differs_from_clean_only_inside_the_artifact_masks(label, seed):
    config = PhantomConfig(width=160, height=120, **ALL_ARTIFACTS)
    sample = render_phantom(label, np.random.default_rng(seed), config)
    diff = changed(sample)
    assert diff.any()
    outside = diff & ~sample.artifact_mask
    assert not outside.any(), f"{outside.sum()} changed pixels lie outside every artifact mask"
    assert sample.artifacts == set(ARTIFACTS)


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    label=st.sampled_from(CLASSES),
    width=st.integers(32, 120),
    height=st.integers(32, 120),
)
def test_masks_cover_every_changed_pixel_at_any_size(seed, label, width, height):
    sample = render_phantom(label, np.random.default_rng(seed), PhantomConfig(width=width, height=height))
    assert sample.image.shape == sample.clean.shape == (height, width, 3)
    assert not (changed(sample) & ~sample.artifact_mask).any()
    # A mask claims only artifacts that were drawn.
    for name in ("hair", "vignette", "bubbles"):
        assert getattr(sample, name).any() == (name in sample.artifacts)
    assert sample.ruler.any() == bool({"ruler", "ink"} & sample.artifacts)


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_each_artifact_alone_changes_pixels_only_inside_its_own_mask(artifact):
    config = PhantomConfig(width=200, height=150, **{**NO_ARTIFACTS, f"{artifact}_rate": 1.0})
    for seed in range(4):
        sample = render_phantom(CLASSES[seed], np.random.default_rng(seed), config)
        mask = getattr(sample, MASK_OF[artifact])
        diff = changed(sample)
        assert sample.artifacts == {artifact}
        assert mask.any()
        assert not (diff & ~mask).any()
        # The mask is tight as well as covering: most of it really changed (only faint antialiased
        # fringes may round back to the clean value).
        assert diff[mask].mean() > 0.5
        for other in {"hair", "ruler", "vignette", "bubbles"} - {MASK_OF[artifact]}:
            assert not getattr(sample, other).any(), other


def test_hair_is_dark_and_reported_as_its_coverage():
    config = PhantomConfig(width=200, height=150, **{**NO_ARTIFACTS, "hair_rate": 1.0}, hair_count=(20, 20))
    sample = render_phantom("NV", np.random.default_rng(5), config)
    assert sample.hair_fraction == pytest.approx(sample.hair.mean())
    assert 0.005 < sample.hair_fraction < 0.6
    core = sample.hair & changed(sample)
    darker = sample.image[core].astype(int).sum(-1) < sample.clean[core].astype(int).sum(-1)
    assert darker.mean() > 0.7


def test_without_artifacts_the_image_is_the_clean_image():
    config = PhantomConfig(width=96, height=64, **NO_ARTIFACTS)
    for label in CLASSES:
        sample = render_phantom(label, np.random.default_rng(3), config)
        assert np.array_equal(sample.image, sample.clean)
        assert not sample.artifact_mask.any()
        assert sample.artifacts == frozenset() and sample.hair_fraction == 0.0


@pytest.mark.parametrize("label", CLASSES)
def test_lesion_mask_is_a_sensible_region_that_differs_from_the_skin(label):
    config = PhantomConfig(width=200, height=150, **NO_ARTIFACTS)
    for seed in range(3):
        sample = render_phantom(label, np.random.default_rng(seed), config)
        lesion = sample.lesion
        assert lesion.dtype == bool and lesion.shape == (150, 200)
        assert sample.lesion_area == pytest.approx(lesion.mean())
        assert 0.01 < sample.lesion_area < 0.6
        x, y = sample.lesion_centre
        assert 0.25 * 200 < x < 0.75 * 200 and 0.25 * 150 < y < 0.75 * 150
        count, _ = cv2.connectedComponents(lesion.astype(np.uint8))
        assert count - 1 <= 3  # one lesion (a stray streak tip may come apart)
        skin = ~cv2.dilate(lesion.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        lab = cv2.cvtColor(sample.clean.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
        assert np.linalg.norm(lab[lesion].mean(0) - lab[skin].mean(0)) > 4.0


# -- skin tone -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ita", [-40.0, -30.0, 0.0, 28.0, 41.0, 60.0, 75.0])
def test_ita_inversion_round_trips(ita):
    lightness, b_star = lightness_for_ita(ita, 16.0)
    assert 15.0 <= lightness <= 92.0 and b_star > 0
    assert float(ita_from_lab(lightness, b_star)) == pytest.approx(ita)


@pytest.mark.parametrize("ita", [-30.0, 0.0, 30.0, 55.0])
def test_rendered_skin_has_the_requested_ita(ita):
    config = PhantomConfig(width=160, height=120, **NO_ARTIFACTS)
    sample = render_phantom("NV", np.random.default_rng(11), config, ita=ita)
    assert sample.ita == ita
    skin = ~cv2.dilate(sample.lesion.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    lab = cv2.cvtColor(sample.clean.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[skin]
    measured = float(ita_from_lab(float(np.median(lab[:, 0])), float(np.median(lab[:, 2]))))
    assert measured == pytest.approx(ita, abs=3.0)


def test_skin_tone_spans_the_configured_range():
    # The uniform draw of before issue 18 (ita_bin_weights None) stays reachable by config.
    config = PhantomConfig(width=64, height=64, ita_range=(-30.0, 60.0), ita_bin_weights=None)
    rng = np.random.default_rng(0)
    itas = [sample_lesion_params("NV", rng, config).skin.ita for _ in range(200)]
    assert -30.0 <= min(itas) < -15.0 and 45.0 < max(itas) <= 60.0


# -- determinism and views ---------------------------------------------------------------------------------


def test_render_is_deterministic_per_seed():
    config = PhantomConfig(width=128, height=96, **ALL_ARTIFACTS)
    a, b, c = (render_phantom("MEL", np.random.default_rng(seed), config) for seed in (7, 7, 8))
    for name in ("image", "clean", "lesion", "hair", "ruler", "vignette", "bubbles"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.ita == b.ita and a.lesion_centre == b.lesion_centre
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.clean, c.clean)


def test_a_lesion_seen_again_keeps_its_skin_and_size_in_a_new_view():
    config = PhantomConfig(width=160, height=120)
    rng = np.random.default_rng(4)
    params = sample_lesion_params("BKL", rng, config)
    first = render_phantom("BKL", rng, config, lesion_params=params)
    second = render_phantom("BKL", rng, config, lesion_params=params)
    assert first.lesion_params == second.lesion_params == params
    assert first.ita == second.ita == params.skin.ita
    assert second.lesion_area == pytest.approx(first.lesion_area, rel=0.35)
    assert not np.array_equal(first.clean, second.clean)  # turned and moved a little
    overlap = (first.lesion & second.lesion).sum() / (first.lesion | second.lesion).sum()
    assert overlap > 0.3


def test_render_rejects_inconsistent_requests():
    config = PhantomConfig(width=64, height=64)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown class 'DF'"):
        render_phantom("DF", rng, config)
    params = sample_lesion_params("NV", rng, config)
    with pytest.raises(ValueError, match="of class 'NV', not 'MEL'"):
        render_phantom("MEL", rng, config, lesion_params=params)
    with pytest.raises(ValueError, match="either ita or lesion_params"):
        render_phantom("NV", rng, config, ita=params.skin.ita + 10, lesion_params=params)
    with pytest.raises(ValueError, match=r"ITA must lie in \(-90, 90\)"):
        render_phantom("NV", rng, config, ita=95.0)


# -- config validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 16}, r"width must be an integer in \[32, 8192\]"),
        ({"height": 450.0}, "height must be an integer"),
        ({"hair_rate": 1.5}, r"hair_rate must be a probability in \[0, 1\]"),
        ({"ruler_rate": -0.1}, "ruler_rate must be a probability"),
        ({"ink_rate": "often"}, "ink_rate must be a probability"),
        ({"vignette_rate": float("nan")}, "vignette_rate must be a probability"),
        ({"bubbles_rate": 2}, "bubbles_rate must be a probability"),
        ({"hair_count": (10, 5)}, "hair_count must satisfy low <= high"),
        ({"hair_count": (1.5, 5)}, "hair_count must hold integers"),
        ({"hair_count": 5}, r"hair_count must be a \(low, high\) pair"),
        ({"hair_width": (0.0, 2.0)}, "hair_width must satisfy"),
        ({"ita_range": (-30.0, 90.0)}, "ita_range must satisfy"),
        ({"lesion_radius": (0.2, 0.7)}, "lesion_radius must satisfy"),
    ],
)
def test_config_rejects_out_of_range_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PhantomConfig(**kwargs)


def test_config_accepts_lists_and_keeps_the_defaults_of_ham10000():
    config = PhantomConfig(hair_count=[2, 3])
    assert config.hair_count == (2, 3)
    assert (config.width, config.height) == (600, 450)
    assert hash(config) == hash(PhantomConfig(hair_count=(2, 3)))


def test_config_round_trips_through_json():
    config = PhantomConfig(width=64, height=48, hair_rate=0.25, ita_range=(-10.0, 20.0))
    assert PhantomConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown PhantomConfig field"):
        PhantomConfig.from_dict({"hair_density": 3})


# -- the data set on disk ----------------------------------------------------------------------------------

DATASET_COUNT = 60


def read_rows(root: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(root / METADATA_CSV, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom") / "ham"
    calls = []

    def progress(done, total):
        # The index is written last: while images are still being written there is no CSV.
        calls.append((done, total, (root / METADATA_CSV).exists()))

    info = write_phantom_dataset(root, DATASET_COUNT, width=96, height=72, seed=3, progress=progress)
    return info, root, calls


def test_dataset_csv_has_the_ham10000_columns_then_the_phantom_columns(dataset):
    info, root, _ = dataset
    header, rows = read_rows(root)
    assert header[:7] == ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    assert header == list(COLUMNS)
    assert header[7:] == [
        "ita",
        "lesion_area",
        "has_hair",
        "has_ruler",
        "has_ink",
        "has_vignette",
        "has_bubbles",
        "hair_fraction",
    ]
    assert len(rows) == DATASET_COUNT == info.image_count
    assert len({row["image_id"] for row in rows}) == DATASET_COUNT
    for row in rows:
        assert re.fullmatch(r"ISIC_\d{7}", row["image_id"])
        assert re.fullmatch(r"HAM_\d{7}", row["lesion_id"])
        assert row["dx"] in {"nv", "bcc", "bkl", "mel", "scc"}
        assert row["dx_type"] in {"histo", "follow_up", "consensus", "confocal"}
        assert row["sex"] in {"male", "female", "unknown"}
        assert row["localization"] in {
            "back",
            "lower extremity",
            "trunk",
            "upper extremity",
            "abdomen",
            "face",
            "chest",
            "foot",
            "unknown",
            "neck",
            "scalp",
            "hand",
            "ear",
            "genital",
            "acral",
        }
        assert row["age"] == "" or (int(row["age"]) % 5 == 0 and 0 <= int(row["age"]) <= 85)
        assert -50.0 <= float(row["ita"]) <= 70.0  # the default ita_range since issue 18
        assert 0.0 < float(row["lesion_area"]) < 1.0
        assert all(row[f"has_{name}"] in {"0", "1"} for name in ARTIFACTS)
        assert (float(row["hair_fraction"]) > 0) == (row["has_hair"] == "1")


def test_dataset_class_counts_follow_the_proportions(dataset):
    info, root, _ = dataset
    _, rows = read_rows(root)
    counts = Counter(row["dx"] for row in rows)
    expected = class_counts(DATASET_COUNT, REFERENCE_PROPORTIONS)
    assert info.class_counts == expected
    assert {dx: counts[dx] for dx in counts} == {label.lower(): n for label, n in expected.items() if n}
    # Quotas 31.56, 12.86, 6.96, 6.64, 1.98: floors sum to 56; the four largest remainders get one more,
    # so MEL (.64) goes up before NV (.56).
    assert expected == {"NV": 31, "BCC": 13, "BKL": 7, "MEL": 7, "SCC": 2}


def test_dataset_files_exist_for_every_row_and_match_each_other(dataset):
    _, root, _ = dataset
    _, rows = read_rows(root)
    parts = {name: {p.stem for p in (root / name).glob("*.jpg")} for name in IMAGE_DIRS}
    assert len(parts[IMAGE_DIRS[0]]) == len(parts[IMAGE_DIRS[1]]) == DATASET_COUNT // 2
    assert parts[IMAGE_DIRS[0]] | parts[IMAGE_DIRS[1]] == {row["image_id"] for row in rows}
    for row in rows:
        image_id = row["image_id"]
        part = IMAGE_DIRS[0] if image_id in parts[IMAGE_DIRS[0]] else IMAGE_DIRS[1]
        image = cv2.imread(str(root / part / f"{image_id}.jpg"))
        clean = cv2.imread(str(root / CLEAN_DIR / f"{image_id}.png"))
        assert image.shape == clean.shape == (72, 96, 3)
        masks = {}
        for kind in MASK_KINDS:
            mask = cv2.imread(str(root / MASKS_DIR / kind / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
            assert mask.shape == (72, 96) and mask.dtype == np.uint8
            assert set(np.unique(mask)) <= {0, 255}
            masks[kind] = mask > 0
        assert masks["lesion"].mean() == pytest.approx(float(row["lesion_area"]), abs=1e-4)
        assert masks["hair"].mean() == pytest.approx(float(row["hair_fraction"]), abs=1e-4)
        assert masks["hair"].any() == (row["has_hair"] == "1")
        assert masks["ruler"].any() == (row["has_ruler"] == "1" or row["has_ink"] == "1")
        # Outside every artifact mask the JPEG is the clean image up to compression noise.
        artifacts = masks["hair"] | masks["ruler"] | masks["vignette"] | masks["bubbles"]
        away = ~cv2.dilate(artifacts.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        error = np.abs(image.astype(int) - clean.astype(int))[away]
        assert error.mean() < 3.0


def test_dataset_groups_several_images_under_some_lesions(dataset):
    info, root, _ = dataset
    _, rows = read_rows(root)
    by_lesion = defaultdict(list)
    for row in rows:
        by_lesion[row["lesion_id"]].append(row)
    assert len(by_lesion) == info.lesion_count < DATASET_COUNT
    assert max(len(images) for images in by_lesion.values()) <= 6
    assert any(len(images) > 1 for images in by_lesion.values())
    for images in by_lesion.values():
        # One lesion, one patient, one skin: everything but the view and its artifacts is shared.
        for column in ("dx", "dx_type", "age", "sex", "localization", "ita"):
            assert len({row[column] for row in images}) == 1, column


def test_dataset_reports_progress_and_writes_the_index_last(dataset):
    _, root, calls = dataset
    assert calls[-1] == (DATASET_COUNT, DATASET_COUNT, False)
    assert [done for done, _, _ in calls] == sorted(done for done, _, _ in calls)
    assert not any(csv_present for _, _, csv_present in calls)
    assert (root / METADATA_CSV).is_file()
    assert not list(root.glob("*.tmp"))


def test_dataset_is_deterministic_per_seed(tmp_path):
    kwargs = {"count": 12, "width": 64, "height": 48}
    first = tree_digest(write_phantom_dataset(tmp_path / "a", seed=5, **kwargs).out_dir)
    second = tree_digest(write_phantom_dataset(tmp_path / "b", seed=5, **kwargs).out_dir)
    other = tree_digest(write_phantom_dataset(tmp_path / "c", seed=6, **kwargs).out_dir)
    assert first == second
    assert first[METADATA_CSV] != other[METADATA_CSV]
    jpegs = [name for name in first if name.endswith(".jpg")]
    assert len(jpegs) == 12
    assert sum(first[name] != other.get(name) for name in jpegs) >= 10


def test_dataset_refuses_to_overwrite_or_to_guess_the_size(tmp_path, dataset):
    _, root, _ = dataset
    with pytest.raises(FileExistsError, match="new folder"):
        write_phantom_dataset(root, 2, width=96, height=72)
    with pytest.raises(ValueError, match=r"width=64 disagrees with config\.width=600"):
        write_phantom_dataset(tmp_path / "x", 2, width=64, config=PhantomConfig())
    info = write_phantom_dataset(tmp_path / "y", 2, config=PhantomConfig(width=48, height=40))
    assert (info.width, info.height) == (48, 40)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": -1}, "count must be >= 0"),
        ({"count": 2.5}, "count must be an integer"),
        ({"count": 2, "seed": -3}, "seed must be a non-negative integer"),
        ({"count": 2, "proportions": {"NV": 1.0, "AKIEC": 1.0}}, "unknown class"),
    ],
)
def test_dataset_rejects_bad_arguments_before_writing_anything(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_phantom_dataset(tmp_path / "out", width=32, height=32, **kwargs)
    assert not (tmp_path / "out").exists()


@settings(database=None)
@given(count=st.integers(0, 400), shares=st.lists(st.floats(0.0, 10.0), min_size=5, max_size=5))
def test_class_counts_sum_to_count_by_largest_remainder(count, shares):
    if sum(shares) <= 0:
        shares = [1.0] * 5
    proportions = dict(zip(CLASSES, shares, strict=True))
    counts = class_counts(count, proportions)
    assert sum(counts.values()) == count
    wanted = [label for label in CLASSES if proportions[label] > 0]
    quotas = {label: count * proportions[label] / sum(shares) for label in CLASSES}
    for label in CLASSES:
        if label not in wanted:
            assert counts[label] == 0
        elif count >= len(wanted):
            assert counts[label] >= 1
    if all(quotas[label] >= 1 for label in wanted):
        # Largest remainder: every count is its quota rounded down or up.
        assert all(abs(counts[label] - quotas[label]) < 1 for label in CLASSES)


def test_class_counts_rejects_bad_proportions():
    assert class_counts(5, REFERENCE_PROPORTIONS) == dict.fromkeys(CLASSES, 1)
    assert class_counts(10, {"MEL": 1.0}) == {"NV": 0, "BCC": 0, "BKL": 0, "MEL": 10, "SCC": 0}
    with pytest.raises(ValueError, match="unknown class"):
        class_counts(10, {"DF": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        class_counts(10, {"NV": 0.0})
    with pytest.raises(ValueError, match="non-negative"):
        class_counts(10, {"NV": -1.0, "MEL": 2.0})


# -- learnability ------------------------------------------------------------------------------------------


def colour_features(images: np.ndarray, bins: int) -> np.ndarray:
    """Per-channel mean (bins=0) or mean, std and a joint RGB histogram with ``bins`` levels per channel."""
    pixels = images.reshape(len(images), -1, 3).astype(np.float32) / 255
    features = [pixels.mean(1)]
    if bins:
        q = np.minimum((pixels * bins).astype(int), bins - 1)
        index = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
        histogram = np.stack([np.bincount(i, minlength=bins**3) for i in index]) / index.shape[1]
        features += [pixels.std(1), histogram]
    return np.hstack(features)


def colour_baseline(train_x, train_y, test_x, test_y, bins: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(colour_features(train_x, bins), train_y)
    return float((model.predict(colour_features(test_x, bins)) == test_y).mean())


def small_cnn_accuracy(train_x, train_y, test_x, test_y, epochs: int = 12) -> float:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the test machines are small and shared; also keeps the result stable
    try:
        return _train_and_score(torch, train_x, train_y, test_x, test_y, epochs)
    finally:
        torch.set_num_threads(threads)


def _train_and_score(torch, train_x, train_y, test_x, test_y, epochs: int) -> float:
    from torch import nn

    torch.manual_seed(0)

    def block(c_in, c_out):
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)
        )

    model = nn.Sequential(
        block(3, 16),
        block(16, 32),
        block(32, 48),
        block(48, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, len(CLASSES)),
    )
    x = torch.tensor(train_x).permute(0, 3, 1, 2).float() / 255
    x_test = torch.tensor(test_x).permute(0, 3, 1, 2).float() / 255
    mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)
    x, x_test = (x - mean) / std, (x_test - mean) / std
    y = torch.tensor(train_y)
    batch = 32
    optimiser = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 5e-3, total_steps=epochs * -(-len(x) // batch))
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(x), generator=generator).split(batch):
            xb = x[index]
            # Flips: a lesion's class does not depend on its orientation.
            flip = torch.rand(len(index), 1, 1, 1, generator=generator) < 0.5
            xb = torch.where(flip, xb.flip(3), xb)
            flip = torch.rand(len(index), 1, 1, 1, generator=generator) < 0.5
            xb = torch.where(flip, xb.flip(2), xb)
            loss = nn.functional.cross_entropy(model(xb), y[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        return float((model(x_test).argmax(1).numpy() == test_y).mean())


@pytest.mark.slow
def test_classes_are_learnable_from_structure_not_from_colour():
    """A tiny CNN must beat colour models by a wide margin: the classes are told apart by shape, texture
    and structure, and a phantom whose classes differ mainly in colour would teach nothing about
    dermoscopy (and would make every preprocessing comparison on it trivially easy)."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    config = PhantomConfig(width=64, height=64)  # default artifact rates: hair, rulers... included
    rng = np.random.default_rng(2024)
    labels = np.repeat(np.arange(len(CLASSES)), 80)
    rng.shuffle(labels)
    images = np.stack([render_phantom(CLASSES[i], rng, config).image for i in labels])
    split = 300
    data = (images[:split], labels[:split], images[split:], labels[split:])

    mean_colour = colour_baseline(*data, bins=0)
    histogram = colour_baseline(*data, bins=4)
    cnn = small_cnn_accuracy(*data)
    chance = 1 / len(CLASSES)
    report = (
        f"CNN {cnn:.2f}, colour histogram {histogram:.2f}, mean colour {mean_colour:.2f}, chance {chance:.2f}"
    )
    print(report)
    assert cnn >= chance + 0.45, report
    assert cnn >= histogram + 0.12, report
    assert cnn >= mean_colour + 0.3, report
