"""Write a phantom data set on disk in the HAM10000 distribution layout, ground truth beside it.

::

    <out_dir>/HAM10000_metadata.csv                      written last
    <out_dir>/HAM10000_images_part_1/ISIC_0000000.jpg    first half of the images (JPEG, quality 90)
    <out_dir>/HAM10000_images_part_2/ISIC_...jpg         second half
    <out_dir>/phantom_clean/<image_id>.png               the same scene without artifacts
    <out_dir>/phantom_masks/<kind>/<image_id>.png        kind: lesion, hair, ruler (ticks and ink),
                                                         vignette, bubbles; 0/255 single-channel

The CSV has HAM10000's columns (lesion_id, image_id, dx, dx_type, age, sex, localization) and then the
phantom's own: ita, lesion_area, has_hair, has_ruler, has_ink, has_vignette, has_bubbles, hair_fraction.
HAM10000's lowercase dx codes are used (nv, mel, bkl, bcc). HAM10000 has no SCC class; the phantom
writes ``scc``, a phantom-only code, so that all five classes pass through the one HAM10000 importer.

As in HAM10000, some lesions have several images (1-6): the same lesion on the same skin, seen again
with a small rotation, shift and zoom and with new artifacts. Splits must therefore group by lesion_id.
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from skingenbench.services.core.classes import CLASSES, REFERENCE_PROPORTIONS
from skingenbench.services.data.core.phantom import (
    ARTIFACTS,
    PhantomConfig,
    PhantomSample,
    render_phantom,
    sample_lesion_params,
)

METADATA_CSV = "HAM10000_metadata.csv"
IMAGE_DIRS = ("HAM10000_images_part_1", "HAM10000_images_part_2")
CLEAN_DIR = "phantom_clean"
MASKS_DIR = "phantom_masks"
MASK_KINDS = ("lesion", "hair", "ruler", "vignette", "bubbles")
HAM_COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")
PHANTOM_COLUMNS = (
    "ita",
    "lesion_area",
    "has_hair",
    "has_ruler",
    "has_ink",
    "has_vignette",
    "has_bubbles",
    "hair_fraction",
)
COLUMNS = HAM_COLUMNS + PHANTOM_COLUMNS
JPEG_QUALITY = 90

# HAM10000 dx codes; ``scc`` is the phantom's own (HAM10000 has no SCC class).
DX_CODES: dict[str, str] = {"NV": "nv", "BCC": "bcc", "BKL": "bkl", "MEL": "mel", "SCC": "scc"}

# Images per lesion. HAM10000 has 10,015 images of 7,470 lesions, most with one image and a few with up
# to six; these weights give about 1.35 images per lesion.
_IMAGES_PER_LESION = {1: 0.76, 2: 0.15, 3: 0.05, 4: 0.02, 5: 0.01, 6: 0.01}

# Plausible metadata in HAM10000's vocabulary; weights roughly follow its metadata.
_LOCALIZATIONS = {
    "back": 2192,
    "lower extremity": 2077,
    "trunk": 1404,
    "upper extremity": 1118,
    "abdomen": 1022,
    "face": 745,
    "chest": 407,
    "foot": 319,
    "unknown": 234,
    "neck": 168,
    "scalp": 128,
    "hand": 90,
    "ear": 56,
    "genital": 48,
    "acral": 7,
}
_SEXES = {"male": 0.54, "female": 0.455, "unknown": 0.005}
# Benign nevi are often confirmed by follow-up; carcinomas and melanomas by histopathology.
_DX_TYPES = {
    "NV": {"histo": 0.35, "follow_up": 0.5, "consensus": 0.13, "confocal": 0.02},
    "BKL": {"histo": 0.6, "consensus": 0.3, "confocal": 0.1},
}
_DX_TYPES_MALIGNANT = {"histo": 0.88, "consensus": 0.1, "confocal": 0.02}
# Mean age per class (years): nevi in younger patients, keratinocyte cancers in the oldest.
_MEAN_AGE = {"NV": 42.0, "BCC": 67.0, "BKL": 62.0, "MEL": 60.0, "SCC": 70.0}

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class PhantomDatasetInfo:
    """What :func:`write_phantom_dataset` wrote."""

    out_dir: Path
    metadata_csv: Path
    image_count: int
    lesion_count: int
    class_counts: dict[str, int]
    width: int
    height: int
    seed: int
    config: PhantomConfig


def class_counts(count: int, proportions: Mapping[str, float]) -> dict[str, int]:
    """Split ``count`` images over the classes by largest remainder, so the counts sum to ``count``.

    When there are at least as many images as classes with a share, every such class gets one.
    """
    unknown = sorted(set(proportions) - set(CLASSES))
    if unknown:
        raise ValueError(f"unknown class(es) {unknown} in proportions; expected some of {', '.join(CLASSES)}")
    shares = {label: float(proportions.get(label, 0.0)) for label in CLASSES}
    if any(not np.isfinite(v) or v < 0 for v in shares.values()) or sum(shares.values()) <= 0:
        raise ValueError(f"proportions must be non-negative with a positive sum, got {dict(proportions)}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    total = sum(shares.values())
    quotas = {label: count * share / total for label, share in shares.items()}
    counts = {label: int(quota) for label, quota in quotas.items()}
    by_remainder = sorted(CLASSES, key=lambda label: (-(quotas[label] - counts[label]), CLASSES.index(label)))
    for label in by_remainder[: count - sum(counts.values())]:
        counts[label] += 1
    wanted = [label for label in CLASSES if shares[label] > 0]
    if count >= len(wanted):
        for label in wanted:
            if counts[label] == 0:
                donor = max(CLASSES, key=lambda name: (counts[name], -CLASSES.index(name)))
                counts[donor] -= 1
                counts[label] = 1
    return counts


def write_phantom_dataset(
    out_dir: str | os.PathLike,
    count: int,
    width: int | None = None,
    height: int | None = None,
    seed: int = 0,
    proportions: Mapping[str, float] = REFERENCE_PROPORTIONS,
    config: PhantomConfig | None = None,
    progress: ProgressFn | None = None,
) -> PhantomDatasetInfo:
    """Write ``count`` phantom images in the HAM10000 layout under ``out_dir``; the CSV last.

    The image size is ``width`` x ``height`` (default: the config's, 600x450 without one). ``config``
    supplies artifact rates and ranges. The same arguments give byte-identical files.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise ValueError(f"count must be an integer, got {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    config = _resolve_config(config, width, height)
    counts = class_counts(count, proportions)
    root = Path(out_dir)
    if (root / METADATA_CSV).exists():
        raise FileExistsError(f"{root / METADATA_CSV} exists: write a phantom data set into a new folder")
    for folder in (*IMAGE_DIRS, CLEAN_DIR, *(f"{MASKS_DIR}/{kind}" for kind in MASK_KINDS)):
        (root / folder).mkdir(parents=True, exist_ok=True)

    plan = _plan(counts, np.random.default_rng([seed, 0]))
    rows: list[dict[str, object]] = []
    done = 0
    for lesion_index, lesion in enumerate(plan):
        # One generator per lesion, seeded by its index: a lesion does not depend on the ones before it.
        rng = np.random.default_rng([seed, 1, lesion_index])
        params = sample_lesion_params(lesion.label, rng, config)
        for image_number in lesion.image_numbers:
            sample = render_phantom(lesion.label, rng, config, lesion_params=params)
            image_id = f"ISIC_{image_number:07d}"
            part = IMAGE_DIRS[0] if image_number < (count + 1) // 2 else IMAGE_DIRS[1]
            _write_sample(root, part, image_id, sample)
            rows.append(_row(lesion, image_id, sample))
            done += 1
            if progress is not None and (done == count or done % max(1, count // 100) == 0):
                progress(done, count)

    rows.sort(key=lambda row: str(row["image_id"]))
    _write_csv(root / METADATA_CSV, rows)
    return PhantomDatasetInfo(
        out_dir=root,
        metadata_csv=root / METADATA_CSV,
        image_count=count,
        lesion_count=len(plan),
        class_counts=counts,
        width=config.width,
        height=config.height,
        seed=seed,
        config=config,
    )


def _resolve_config(config: PhantomConfig | None, width: int | None, height: int | None) -> PhantomConfig:
    """The config with the requested size; a size that contradicts a given config is an error."""
    size = {name: value for name, value in (("width", width), ("height", height)) if value is not None}
    if config is None:
        default = PhantomConfig()
        return replace(
            default,
            width=default.width if width is None else width,
            height=default.height if height is None else height,
        )
    for name, value in size.items():
        if getattr(config, name) != value:
            raise ValueError(
                f"{name}={value} disagrees with config.{name}={getattr(config, name)}; give the size once"
            )
    return config


@dataclass(frozen=True)
class _PlannedLesion:
    """One lesion of the plan: its class, the numbers of its images and its patient's metadata."""

    label: str
    lesion_id: str
    image_numbers: tuple[int, ...]
    dx_type: str
    age: str
    sex: str
    localization: str


def _plan(counts: Mapping[str, int], rng: np.random.Generator) -> list[_PlannedLesion]:
    """Group each class's images into lesions of 1-6 images; image and lesion numbers are shuffled over
    the classes, so ids say nothing about the class."""
    sizes = list(_IMAGES_PER_LESION)
    size_weights = np.array(list(_IMAGES_PER_LESION.values()))
    grouped: list[tuple[str, int]] = []
    for label in CLASSES:
        remaining = counts[label]
        while remaining > 0:
            n = min(int(rng.choice(sizes, p=size_weights / size_weights.sum())), remaining)
            grouped.append((label, n))
            remaining -= n
    image_numbers = iter(rng.permutation(sum(n for _, n in grouped)).tolist())
    lesion_numbers = rng.permutation(len(grouped)).tolist()
    places = list(_LOCALIZATIONS)
    place_weights = np.array(list(_LOCALIZATIONS.values()), float)
    lesions = []
    for (label, n), lesion_number in zip(grouped, lesion_numbers, strict=True):
        dx_types = _DX_TYPES.get(label, _DX_TYPES_MALIGNANT)
        # HAM10000 gives ages in steps of five and leaves a few empty.
        age = int(np.clip(round(rng.normal(_MEAN_AGE[label], 15.0) / 5.0) * 5, 0, 85))
        lesions.append(
            _PlannedLesion(
                label=label,
                lesion_id=f"HAM_{lesion_number:07d}",
                image_numbers=tuple(next(image_numbers) for _ in range(n)),
                dx_type=str(rng.choice(list(dx_types), p=np.array(list(dx_types.values())))),
                age="" if rng.random() < 0.006 else str(age),
                sex=str(rng.choice(list(_SEXES), p=np.array(list(_SEXES.values())))),
                localization=str(rng.choice(places, p=place_weights / place_weights.sum())),
            )
        )
    return lesions


def _row(lesion: _PlannedLesion, image_id: str, sample: PhantomSample) -> dict[str, object]:
    row: dict[str, object] = {
        "lesion_id": lesion.lesion_id,
        "image_id": image_id,
        "dx": DX_CODES[sample.label],
        "dx_type": lesion.dx_type,
        "age": lesion.age,
        "sex": lesion.sex,
        "localization": lesion.localization,
        "ita": f"{sample.ita:.2f}",
        "lesion_area": f"{sample.lesion_area:.4f}",
    }
    for name in ARTIFACTS:
        row[f"has_{name}"] = int(name in sample.artifacts)
    row["hair_fraction"] = f"{sample.hair_fraction:.4f}"
    return row


def _write_sample(root: Path, part: str, image_id: str, sample: PhantomSample) -> None:
    _imwrite(
        root / part / f"{image_id}.jpg",
        cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
    )
    _imwrite(root / CLEAN_DIR / f"{image_id}.png", cv2.cvtColor(sample.clean, cv2.COLOR_RGB2BGR))
    for kind in MASK_KINDS:
        mask = getattr(sample, kind).astype(np.uint8) * 255
        _imwrite(root / MASKS_DIR / kind / f"{image_id}.png", mask)


def _imwrite(path: Path, image: np.ndarray, params: list[int] | None = None) -> None:
    # Encode in memory and write bytes ourselves: cv2.imwrite fails silently on some paths.
    ok, encoded = cv2.imencode(path.suffix, image, params or [])
    if not ok:
        raise OSError(f"could not encode {path.name}")
    path.write_bytes(encoded.tobytes())


def _write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    # Written to a temporary name and renamed: a reader never sees half an index.
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def bench_phantom(n: int = 200, size: int | tuple[int, int] = 256) -> float:
    """Images per second of :func:`write_phantom_dataset` (files included) at ``size`` (an int for a
    square, or ``(width, height)``)."""
    width, height = (size, size) if isinstance(size, int) else size
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_phantom_dataset(Path(tmp) / "phantom", n, width=width, height=height, seed=0)
        return n / (time.perf_counter() - start)
