"""Tiny source folders in the real HAM10000 / MILK10K layouts, and synthetic manifests for splitting.

Everything is written into a test's ``tmp_path``; images are small random JPEGs/PNGs, each with its
own seed so that no two share a sha256 unless a test wants them to. The expected outcome of each
folder is spelled out next to its rows, and returned with it.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from skingenbench.services.core.classes import CLASSES, REFERENCE_PROPORTIONS
from skingenbench.services.core.manifest import Item, Manifest, Provenance


def write_image(path: Path, seed: int, size: tuple[int, int] = (24, 18)) -> Path:
    """A small noise image (JPEG or PNG by suffix). Real HAM10000 images are 600×450; size is irrelevant here."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), pixels):
        raise OSError(f"could not write {path}")
    return path


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def append_raw_lines(path: Path, lines: Iterable[str]) -> None:
    """Lines written verbatim, for rows the csv module would never produce."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)


@dataclass
class SourceFixture:
    root: Path
    imported: dict[str, str]  # image id → expected class
    dropped: dict[str, int]  # reason category → expected count
    rows: int = 0
    notes: list[str] = field(default_factory=list)


# -- HAM10000 -------------------------------------------------------------------------------------------

HAM_HEADER = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset")


def build_ham10000(root: Path) -> SourceFixture:
    """13 CSV rows (plus a blank line) → 6 images imported, 7 dropped, each for a documented reason.

    ``dataset`` is the extra column of later HAM10000 releases: it must survive as item meta.
    """
    rows = [
        # lesion,  image,         dx,    dx_type,  age,  sex,    localization,            dataset       fate
        ("HAM_0000001", "ISIC_0000001", "nv", "histo", "45.0", "male", "back", "vidir_modern"),  # NV
        (
            "HAM_0000001",
            "ISIC_0000002",
            "nv",
            "histo",
            "45.0",
            "male",
            "back",
            "vidir_modern",
        ),  # NV, same lesion
        (
            "HAM_0000002",
            "ISIC_0000003",
            "nv",
            "follow_up",
            "",
            "female",
            "upper extremity, left",
            "rosendahl",
        ),  # NV
        ("HAM_0000003", "ISIC_0000004", "mel", "histo", "70.0", "male", "face", "vidir_molemax"),  # MEL
        ("HAM_0000003", "ISIC_0000005", "mel", "histo", "70.0", "male", "face", "vidir_molemax"),  # MEL
        ("HAM_0000004", "ISIC_0000006", "bcc", "histo", "80.0", "female", "neck", "vienna_dias"),  # BCC
        (
            "HAM_0000005",
            "ISIC_0000007",
            "bkl",
            "consensus",
            "60.0",
            "male",
            "trunk",
            "rosendahl",
        ),  # missing image
        ("HAM_0000006", "ISIC_0000008", "akiec", "histo", "75.0", "male", "face", "rosendahl"),  # excluded
        (
            "HAM_0000007",
            "ISIC_0000009",
            "df",
            "histo",
            "35.0",
            "female",
            "lower extremity",
            "rosendahl",
        ),  # excluded
        (
            "HAM_0000008",
            "ISIC_0000010",
            "vasc",
            "consensus",
            "5.0",
            "male",
            "abdomen",
            "rosendahl",
        ),  # excluded
        ("HAM_0000009", "ISIC_0000011", "xyz", "histo", "50.0", "female", "back", "rosendahl"),  # unknown dx
    ]
    csv_path = write_csv(root / "HAM10000_metadata.csv", HAM_HEADER, rows)
    append_raw_lines(
        csv_path,
        [
            "",  # a blank line is layout, not a row
            "HAM_0000010,ISIC_0000012,nv",  # malformed: 3 fields
            ",ISIC_0000013,nv,histo,50.0,female,face,rosendahl",  # malformed: empty lesion_id
        ],
    )
    for index, (_, image_id, *_rest) in enumerate(rows):
        if image_id == "ISIC_0000007":
            continue  # the missing image
        part = "HAM10000_images_part_1" if index % 2 == 0 else "HAM10000_images_part_2"
        write_image(root / part / f"{image_id}.jpg", seed=index)
    for image_id in ("ISIC_0000012", "ISIC_0000013"):
        write_image(root / "HAM10000_images_part_2" / f"{image_id}.jpg", seed=hash_seed(image_id))
    return SourceFixture(
        root,
        imported={
            "ISIC_0000001": "NV",
            "ISIC_0000002": "NV",
            "ISIC_0000003": "NV",
            "ISIC_0000004": "MEL",
            "ISIC_0000005": "MEL",
            "ISIC_0000006": "BCC",
        },
        dropped={"excluded diagnosis": 3, "unknown diagnosis": 1, "malformed row": 2, "missing image": 1},
        rows=13,
    )


PHANTOM_MASK_KINDS = ("lesion", "hair", "ruler", "vignette", "bubbles")


def build_phantom_like(root: Path, n: int = 10) -> SourceFixture:
    """The HAM10000 layout as the phantom writes it: ``scc`` rows, its ground-truth columns, clean images, masks.

    Every image has a clean reference and a lesion mask; hair, ruler, vignette and bubbles masks exist
    for every other image only (not every phantom has every artifact).
    """
    header = (*HAM_HEADER[:7], "ita", "lesion_area", "hair_fraction")
    codes = ("nv", "bcc", "bkl", "mel", "scc")
    rows, imported = [], {}
    for i in range(n):
        image_id = f"PH_{i:07d}"
        code = codes[i % len(codes)]
        rows.append(
            (f"PHL_{i // 2:07d}", image_id, code, "histo", "", "", "", "41.50", f"0.{i:04d}", "0.0000")
        )
        imported[image_id] = code.upper()
        write_image(root / "HAM10000_images_part_1" / f"{image_id}.jpg", seed=1000 + i)
        write_image(root / "phantom_clean" / f"{image_id}.png", seed=2000 + i)
        kinds = PHANTOM_MASK_KINDS if i % 2 == 0 else ("lesion",)
        for k, kind in enumerate(kinds):
            write_image(root / "phantom_masks" / kind / f"{image_id}.png", seed=3000 + 10 * i + k)
    write_csv(root / "HAM10000_metadata.csv", header, rows)
    return SourceFixture(root, imported=imported, dropped={}, rows=n)


# -- MILK10K --------------------------------------------------------------------------------------------

MILK_DIAGNOSES = ("AKIEC", "BCC", "BEN_OTH", "BKL", "DF", "INF", "MAL_OTH", "MEL", "NV", "SCCKA", "VASC")
MILK_META_HEADER = (
    "lesion_id",
    "isic_id",
    "attribution",
    "copyright_license",
    "image_type",
    "image_manipulation",
    "age_approx",
    "sex",
    "skin_tone_class",
    "site",
    "MONET_ulceration_crust",
    "MONET_hair",
)


def one_hot(code: str) -> dict[str, float]:
    return {name: 1.0 if name == code else 0.0 for name in MILK_DIAGNOSES}


def build_milk10k(root: Path, *, images: str = "standard") -> SourceFixture:
    """11 lesions, 21 metadata rows → 6 dermoscopic images imported, 17 rows/lesions dropped.

    ``images``: ``standard`` (``MILK10k_Training_Input/<lesion>/<isic>.jpg``), ``zip`` (the doubled
    folder the release zip unpacks to) or ``flat`` (``<isic>.JPG``, as ``isic image download`` writes).
    """
    lesions = [
        # lesion,        ground truth scores,                    images listed,             fate of the dermoscopic one
        ("IL_0000001", one_hot("MEL"), ("dermoscopic", "clinical: close-up")),  # MEL
        ("IL_0000002", one_hot("NV"), ("dermoscopic", "clinical: close-up")),  # NV
        ("IL_0000003", one_hot("SCCKA"), ("dermoscopic", "clinical: close-up")),  # SCCKA → SCC
        ("IL_0000004", one_hot("BCC"), ("dermoscopic", "clinical: close-up")),  # BCC
        ("IL_0000005", one_hot("BKL"), ("dermoscopic", "clinical: close-up")),  # BKL
        ("IL_0000006", one_hot("DF"), ("dermoscopic", "clinical: close-up")),  # excluded diagnosis
        (
            "IL_0000007",
            {**one_hot("MEL"), "MEL": 0.5, "NV": 0.5},
            ("dermoscopic", "clinical: close-up"),
        ),  # tie
        ("IL_0000008", one_hot("NV"), ("dermoscopic", "clinical: close-up")),  # image file missing
        (
            "IL_0000009",
            {**one_hot("MEL"), "MEL": 0.6, "NV": 0.3, "BKL": 0.1},
            ("dermoscopic", "clinical: close-up"),
        ),
        ("IL_0000010", None, ("dermoscopic", "clinical: close-up")),  # malformed GT row → no ground truth
        ("IL_0000011", one_hot("BCC"), ("clinical: close-up",)),  # no dermoscopic image listed
    ]
    gt_rows, meta_rows = [], []
    for number, (lesion_id, scores, image_types) in enumerate(lesions, 1):
        if scores is not None:
            gt_rows.append((lesion_id, *(f"{scores[name]:.1f}" for name in MILK_DIAGNOSES)))
        for image_type in image_types:
            isic_id = f"ISIC_{9000000 + 10 * number + (0 if image_type == 'dermoscopic' else 1)}"
            meta_rows.append(
                (
                    lesion_id,
                    isic_id,
                    "Fixture",
                    "CC-BY-NC",
                    image_type,
                    "instrument only",
                    str(40 + number),
                    "female" if number % 2 else "male",
                    str(number % 6),
                    "trunk",
                    "0.12",
                    "0.5",
                )
            )
            if lesion_id == "IL_0000008" and image_type == "dermoscopic":
                continue  # listed, but its file is missing
            images_dir = root / "MILK10k_Training_Input"
            if images == "zip":
                images_dir = images_dir / "MILK10k_Training_Input"
            path = (
                images_dir / f"{isic_id}.JPG"
                if images == "flat"
                else images_dir / lesion_id / f"{isic_id}.jpg"
            )
            write_image(path, seed=hash_seed(isic_id))
    gt_path = write_csv(root / "MILK10k_Training_GroundTruth.csv", ("lesion_id", *MILK_DIAGNOSES), gt_rows)
    append_raw_lines(gt_path, ["IL_0000010,1.0,0.0"])  # malformed: 3 fields instead of 12
    write_csv(root / "MILK10k_Training_Metadata.csv", MILK_META_HEADER, meta_rows)
    return SourceFixture(
        root,
        imported={
            "ISIC_9000010": "MEL",
            "ISIC_9000020": "NV",
            "ISIC_9000030": "SCC",
            "ISIC_9000040": "BCC",
            "ISIC_9000050": "BKL",
            "ISIC_9000090": "MEL",
        },
        dropped={
            "not dermoscopic": 11,
            "excluded diagnosis": 1,
            "ambiguous diagnosis": 1,
            "missing image": 1,
            "malformed row": 1,
            "no ground truth": 1,
            "no dermoscopic image": 1,
        },
        rows=21,
    )


# -- synthetic manifests --------------------------------------------------------------------------------


def hash_seed(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def make_item(source: str, lesion_id: str, index: int, label: str, *, sha: str | None = None) -> Item:
    image_id = f"{lesion_id}_{index}"
    key = f"{source}/images/{image_id}.jpg"
    return Item(
        key,
        sha or hashlib.sha256(key.encode()).hexdigest(),
        label,
        lesion_id,
        source=source,
        image_id=image_id,
    )


def manifest_of(items: Iterable[Item], name: str = "synthetic") -> Manifest:
    return Manifest(list(items), Provenance("test"), name=name)


def synthetic_manifest(
    n_lesions: int,
    *,
    seed: int = 0,
    sources: Sequence[str] = ("ham10000", "milk10k"),
    max_images: int = 3,
    proportions: dict[str, float] | None = None,
) -> Manifest:
    """Lesions with 1..max_images images each, classes drawn with the reference study's shares.

    Lesion ids repeat across sources on purpose (``L00000`` exists in every source), as real ids
    might: the splitter must keep them apart.
    """
    rng = np.random.default_rng(seed)
    proportions = proportions or REFERENCE_PROPORTIONS
    classes = list(CLASSES)
    weights = np.array([proportions[c] for c in classes])
    items = []
    for n in range(n_lesions):
        source = sources[n % len(sources)]
        label = classes[rng.choice(len(classes), p=weights / weights.sum())]
        lesion_id = f"L{n // len(sources):05d}"
        items += [make_item(source, lesion_id, j, label) for j in range(int(rng.integers(1, max_images + 1)))]
    return manifest_of(items)
