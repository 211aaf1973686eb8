"""Grid definitions: which data, pipelines, generators, classifiers and seeds a benchmark run covers.

A grid is a YAML file validated here with errors that name the bad field (``classifiers[2]: unknown
classifier 'resnet19'``), so a typo fails before any GPU time is spent. Pipeline names follow the
reference study (DESIGN.md): A = basic, B = advanced preprocessing; 1 = real only, 2 = + StyleGAN2-ADA,
3 = + DDPM, 4 = + classic augmentation, 5 = + DermGAN (this platform's addition).

Two synthetic counts, separate on purpose: ``synthetic_count`` images per generator are mixed into
classifier training (0: as many as the real training images of the label, so the synthetic share is one
half of that class), and ``evaluation_count`` images per generator, drawn with seeds 0 … N − 1, are what
FID/KID/IS are computed on. The reference study (SkinGenBench, arXiv 2512.17585) sampled 5,000 per
generator with seeds 0–4999; FID and IS are biased by N (Chong & Forsyth 2020), so only that count
compares with its published values, and the evaluation service warns below its minimums.

``synthetic_ratio`` makes the amount of synthetic data a grid axis (issue 18, dose–response): ratio r mixes
round(r × N) synthetic images into a generator pipeline's training, N being the ``synthetic_count`` rule
above (so the default ``[1.0]`` is today's cell, under today's name and with today's requests). Ratio 0 is
real-only training: its request is pipeline 1's, the same job. Other ratios are cells such as
``A2@r0.5`` (``ratio_pipeline``). ``quality_gate`` (default off) filters synthetic images before training
(``flows/quality_gate.py``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from skingenbench.services.core.classes import CLASSES

GRIDS_DIR = Path(__file__).parent / "grids"
PREPROCESSING_LETTERS = {"basic": "A", "advanced": "B"}
GENERATOR_NUMBERS = {"stylegan2_ada": 2, "ddpm": 3, "dermgan": 5}
REAL_ONLY, AUGMENT_ONLY = 1, 4
REFERENCE_EVALUATION_COUNT = 5000  # synthetic images per generator for FID/KID/IS, seeds 0–4999
EVALUATION_SEED = 0  # the evaluation set's first seed: image i has seed i, as in the reference
DEFAULT_SYNTHETIC_RATIO = 1.0  # × the synthetic_count rule: today's generator pipelines
QUALITY_GATE_KEYS = ("enabled", "memorization", "lesion_area_fraction", "ita_degrees", "margin")
KNOWN_CLASSIFIERS = ("resnet18", "resnet50", "vgg16", "efficientnet_b0", "vit_base_patch16_224")
DATA_SOURCES = ("phantom", "ham10000", "milk10k")
CONTROLLABILITY_KEYS = ("labels", "lesion_area_fractions", "ita_degrees", "centres", "repeats")


def generator_pipeline(preprocessing: str, generator: str) -> str:
    """The name of a (preprocessing arm, generator) cell, e.g. ``A2-stylegan2_ada``, as runs and reports show it."""
    return f"{PREPROCESSING_LETTERS[preprocessing]}{GENERATOR_NUMBERS[generator]}-{generator}"


def ratio_pipeline(pipeline: str, ratio: float) -> str:
    """A generator pipeline's name at a synthetic ratio: ``A2`` at the default ratio, else ``A2@r0.5``."""
    return pipeline if ratio == DEFAULT_SYNTHETIC_RATIO else f"{pipeline}@r{ratio:g}"


def base_pipeline(pipeline: str) -> str:
    """``A2`` of ``A2@r0.5`` (and of ``A2``)."""
    return pipeline.split("@", 1)[0]


def ratio_count(ratio: float, base_count: int) -> int:
    """Synthetic images mixed in at ``ratio``: round(ratio × the synthetic_count rule's count)."""
    return int(round(ratio * base_count))


class GridError(ValueError):
    """A grid file that cannot run, with the field that is wrong."""


@dataclass
class DataSpec:
    source: str = "phantom"
    path: str = ""  # folder of the distribution (ham10000, milk10k)
    extra_sources: list[dict[str, str]] = field(default_factory=list)  # e.g. MILK10K beside HAM10000
    count: int = 400  # phantom only
    width: int = 128
    height: int = 96
    seed: int = 0
    # phantom only: weights of the six ITA bins (very light > 55° … dark < −30°) skin tones are drawn from;
    # None: the phantom's default, skewed light as HAM10000 is (services/data/core/phantom/config.py)
    ita_bin_weights: list[float] | None = None


@dataclass
class SplitSpec:
    train: float = 0.70
    val: float = 0.15
    test: float = 0.15
    seed: int = 0


@dataclass
class Grid:
    name: str
    profile: str = "tiny"
    data: DataSpec = field(default_factory=DataSpec)
    split: SplitSpec = field(default_factory=SplitSpec)
    preprocessing: list[str] = field(default_factory=lambda: ["basic", "advanced"])
    preprocessing_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    generators: list[str] = field(default_factory=lambda: ["stylegan2_ada", "ddpm"])
    generator_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    synthetic_label: str = "MEL"
    synthetic_count: int = 0  # mixed into training; 0: as many as real training images of the synthetic label
    # the dose–response axis: × that count, per generator pipeline; 1.0 is the cell above, 0 is pipeline 1
    synthetic_ratio: list[float] = field(default_factory=lambda: [DEFAULT_SYNTHETIC_RATIO])
    # reject synthetic images before training (memorized, or outside the real training range); off by default
    quality_gate: dict[str, Any] = field(default_factory=lambda: {"enabled": False})
    # sampled per generator for FID/KID/IS, seeds 0 … N − 1; 0: the training mix itself (its count and seeds)
    evaluation_count: int = REFERENCE_EVALUATION_COUNT
    augment_copies: int = 1  # classic augmentation (pipeline 4): copies per training image
    classifiers: list[str] = field(default_factory=lambda: list(KNOWN_CLASSIFIERS))
    classifier_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    bootstrap_samples: int = 1000
    evaluation: dict[str, Any] = field(default_factory=dict)
    # DermGAN's controllability grid (the ControllabilityRequest's axes); empty: the service's defaults.
    controllability: dict[str, Any] = field(default_factory=dict)
    quality_report: bool = True

    def pipelines(self) -> list[tuple[str, str, str | None]]:
        """(pipeline name, preprocessing, generator or 'augment' or None) for every grid cell row."""
        rows = []
        for prep in self.preprocessing:
            letter = PREPROCESSING_LETTERS[prep]
            rows.append((f"{letter}{REAL_ONLY}", prep, None))
            for generator in self.generators:
                rows.append((f"{letter}{GENERATOR_NUMBERS[generator]}", prep, generator))
            rows.append((f"{letter}{AUGMENT_ONLY}", prep, "augment"))
        return sorted(rows)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def phantom_import_options(grid: Grid) -> dict[str, Any]:
    """The phantom import's options (the preprocessing service's ImportRequest.options_json)."""
    options: dict[str, Any] = {"count": grid.data.count, "width": grid.data.width, "height": grid.data.height}
    if grid.data.ita_bin_weights is not None:  # only when given: the import request stays what it was
        options["ita_bin_weights"] = list(grid.data.ita_bin_weights)
    return options


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise GridError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:
            raise GridError(f"{where}.{key}: unknown field (known: {', '.join(sorted(known))})")
    return cls(**data)


def _check_list(value: Any, where: str, allowed: tuple[str, ...] | None = None) -> list:
    if not isinstance(value, list):
        raise GridError(f"{where}: expected a list, got {type(value).__name__}")
    for i, entry in enumerate(value):
        if allowed is not None and entry not in allowed:
            raise GridError(f"{where}[{i}]: unknown value {entry!r} (known: {', '.join(allowed)})")
    return value


def parse_grid(data: Any, name: str = "grid") -> Grid:
    if not isinstance(data, dict):
        raise GridError(f"{name}: a grid file must be a YAML mapping")
    data = dict(data)
    data.setdefault("name", name)
    data["data"] = _build(DataSpec, data.get("data"), "data")
    data["split"] = _build(SplitSpec, data.get("split"), "split")
    grid = _build(Grid, data, "grid")
    if grid.profile not in ("tiny", "paper"):
        raise GridError(f"profile: must be 'tiny' or 'paper', got {grid.profile!r}")
    if grid.data.source not in DATA_SOURCES:
        raise GridError(
            f"data.source: unknown source {grid.data.source!r} (known: {', '.join(DATA_SOURCES)})"
        )
    if grid.data.source != "phantom" and not grid.data.path:
        raise GridError(f"data.path: required for source {grid.data.source!r}")
    if grid.data.source == "phantom" and grid.data.count < 20:
        raise GridError(
            f"data.count: at least 20 phantom images are needed for three splits, got {grid.data.count}"
        )
    fractions = (grid.split.train, grid.split.val, grid.split.test)
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise GridError(f"split: train/val/test must be non-negative and sum to 1, got {fractions}")
    _check_list(grid.preprocessing, "preprocessing", tuple(PREPROCESSING_LETTERS))
    if not grid.preprocessing:
        raise GridError("preprocessing: at least one of basic, advanced")
    _check_list(grid.generators, "generators", tuple(GENERATOR_NUMBERS))
    _check_list(grid.classifiers, "classifiers", KNOWN_CLASSIFIERS)
    seeds = _check_list(grid.seeds, "seeds")
    if not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise GridError("seeds: a non-empty list of non-negative integers")
    if grid.synthetic_label not in CLASSES:
        raise GridError(f"synthetic_label: must be one of {', '.join(CLASSES)}")
    _check_count(
        grid.synthetic_count, "synthetic_count", "0 means as many as real training images of the label"
    )
    _check_count(grid.evaluation_count, "evaluation_count", "0 means the images mixed into training")
    _check_ratios(grid.synthetic_ratio)
    _check_quality_gate(grid.quality_gate)
    if grid.bootstrap_samples < 100:
        raise GridError("bootstrap_samples: at least 100 for a usable 95% interval")
    for key in (
        "preprocessing_config",
        "generator_config",
        "classifier_config",
        "evaluation",
        "controllability",
    ):
        if not isinstance(getattr(grid, key), dict):
            raise GridError(f"{key}: expected a mapping")
    _check_controllability(grid.controllability)
    return grid


def _check_count(value: Any, where: str, zero: str) -> None:
    """A count of images: an integer >= 0 (YAML's ``true`` is a bool, and 1.5 or "5000" is no count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise GridError(f"{where}: an integer number of images, got {value!r}")
    if value < 0:
        raise GridError(f"{where}: must be >= 0 ({zero}), got {value}")


def _check_ratios(ratios: Any) -> None:
    """The dose–response axis: a non-empty list of unique, finite, non-negative numbers."""
    _check_list(ratios, "synthetic_ratio")
    if not ratios:
        raise GridError("synthetic_ratio: at least one ratio (1.0 is the generator pipelines as they were)")
    for i, ratio in enumerate(ratios):
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio):
            raise GridError(f"synthetic_ratio[{i}]: a number, got {ratio!r}")
        if ratio < 0:
            raise GridError(f"synthetic_ratio[{i}]: must be >= 0 (0 is real-only training), got {ratio}")
    if len({float(r) for r in ratios}) != len(ratios):
        raise GridError(f"synthetic_ratio: each ratio once, got {ratios}")


def _check_quality_gate(gate: Any) -> None:
    if not isinstance(gate, dict):
        raise GridError("quality_gate: expected a mapping")
    for key, value in gate.items():
        if key not in QUALITY_GATE_KEYS:
            raise GridError(f"quality_gate.{key}: unknown field (known: {', '.join(QUALITY_GATE_KEYS)})")
        if key != "margin" and not isinstance(value, bool):
            raise GridError(f"quality_gate.{key}: true or false, got {value!r}")
    margin = gate.get("margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0:
        raise GridError(f"quality_gate.margin: a non-negative fraction of the real range, got {margin!r}")
    checks = [key for key in QUALITY_GATE_KEYS if key not in ("enabled", "margin")]
    if gate.get("enabled") and not any(gate.get(key, True) for key in checks):
        raise GridError(f"quality_gate: enabled with every check off ({', '.join(checks)}): nothing to gate")


def _check_controllability(axes: dict[str, Any]) -> None:
    """The shape of the controllability axes; their ranges are the service's to check (it says which)."""
    for key, value in axes.items():
        if key not in CONTROLLABILITY_KEYS:
            raise GridError(
                f"controllability.{key}: unknown field (known: {', '.join(CONTROLLABILITY_KEYS)})"
            )
        if key == "repeats":
            if not isinstance(value, int) or value < 1:
                raise GridError("controllability.repeats: a positive integer")
        elif key == "labels":
            _check_list(value, "controllability.labels", CLASSES)
        elif key == "centres":
            for i, centre in enumerate(_check_list(value, "controllability.centres")):
                if not (
                    isinstance(centre, list)
                    and len(centre) == 2
                    and all(isinstance(c, (int, float)) for c in centre)
                ):
                    raise GridError(f"controllability.centres[{i}]: an [x, y] pair of fractions")
        elif not all(isinstance(v, (int, float)) for v in _check_list(value, f"controllability.{key}")):
            raise GridError(f"controllability.{key}: a list of numbers")


def load_grid(name_or_path: str) -> Grid:
    """A shipped grid by name (``smoke``, ``paper``) or a YAML file path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = GRIDS_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        shipped = ", ".join(sorted(p.stem for p in GRIDS_DIR.glob("*.yaml")))
        raise GridError(f"no grid file {name_or_path!r} (shipped grids: {shipped})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise GridError(f"{path}: not valid YAML: {exc}") from None
    return parse_grid(data, path.stem)
