"""Does the control work? Request attributes, generate, measure the images, compare.

Neither reference measures this: DermGAN shows maps and outputs side by side, and the reference study's
generators are unconditional. Here each requested (class, lesion size, centre, skin tone) is rendered,
and the generated image is measured with the preprocessing stage's own tools -- the lesion by
``segment_lesion`` (colour distance to the border skin, Otsu, central component) and the skin tone by
``estimate_ita`` on the pixels outside that lesion -- the same measurements the real data's
``lesion_area_fraction`` and ``ita_degrees`` come from. Per attribute the report gives the mean
absolute error, the bias (measured - requested), and Pearson's and Spearman's correlations between
requested and measured; images where no lesion or no skin is found are counted as failures.

An optional ``classify`` callable (e.g. the evaluation service's classifier on real data) adds class
anchoring: the share of images classified as the class they were requested as.

The measurement itself is tested with an oracle renderer that paints each map's colours directly: it
must report near-perfect agreement, so any disagreement on a trained model is the model's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from skingenbench.services.generation.core.dermgan.semantic_map import MapParams

ATTRIBUTES = ("lesion_area_fraction", "center_x", "center_y", "ita_degrees")

# The default grid: three lesion sizes from small to large, one tone in the middle of each ITA category
# (Del Bino et al. 2006; dark to very light, so extrapolation to tones rare in dermoscopy data shows),
# and two centres off the middle so that the centre's correlation is defined.
DEFAULT_AREAS = (0.05, 0.12, 0.25)
DEFAULT_ITAS = (-42.5, -10.0, 19.0, 34.5, 48.0, 62.5)
DEFAULT_CENTRES = ((0.42, 0.45), (0.58, 0.55))
DEFAULT_REPEATS = 2

# render(seeds, params) -> uint8 [N, R, R, 3]: image i drawn for params[i] with seeds[i].
Renderer = Callable[[list[int], list[MapParams]], np.ndarray]


@dataclass
class Measurement:
    """What the preprocessing tools see in one image; None where they find no lesion / no skin."""

    lesion_area_fraction: float | None
    center_x: float | None
    center_y: float | None
    ita_degrees: float | None


def measure_image(rgb: np.ndarray) -> Measurement:
    """Lesion area fraction and centroid (fractions of the side) and skin ITA of a uint8 RGB image."""
    from skingenbench.services.core.imaging.lesion_segmentation import segment_lesion  # needs scikit-image
    from skingenbench.services.core.imaging.skin_tone import estimate_ita

    mask = segment_lesion(rgb)
    height, width = mask.shape
    area: float | None
    cx: float | None
    cy: float | None
    if mask.any():
        ys, xs = np.nonzero(mask)
        area, cx, cy = float(mask.mean()), float((xs.mean() + 0.5) / width), float((ys.mean() + 0.5) / height)
    else:
        area = cx = cy = None
    return Measurement(area, cx, cy, estimate_ita(rgb, mask))


@dataclass
class Agreement:
    """Requested vs measured for one attribute over the images where it could be measured."""

    count: int
    failures: int
    mean_absolute_error: float
    bias: float
    pearson: float  # nan when either side is constant
    spearman: float


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), for Spearman's correlation."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def agreement(requested: Sequence[float], measured: Sequence[float | None]) -> Agreement:
    pairs = [(r, m) for r, m in zip(requested, measured, strict=True) if m is not None]
    failures = len(requested) - len(pairs)
    if not pairs:
        return Agreement(0, failures, math.nan, math.nan, math.nan, math.nan)
    wanted, got = (np.array(side, np.float64) for side in zip(*pairs, strict=True))
    return Agreement(
        len(pairs),
        failures,
        float(np.abs(got - wanted).mean()),
        float((got - wanted).mean()),
        _pearson(wanted, got),
        _pearson(_ranks(wanted), _ranks(got)),
    )


@dataclass
class ControllabilityReport:
    attributes: dict[str, Agreement]  # over all images
    per_class: dict[str, dict[str, Agreement]]  # the same, per requested class
    class_accuracy: float | None  # share classified as requested (None without a classifier)
    rows: list[dict] = field(default_factory=list)  # per image: seed, requested, measured, predicted class

    def to_dict(self) -> dict:
        """JSON-ready, with undefined statistics (NaN) as null so that any JSON reader takes it."""
        return json_safe(asdict(self))


def json_safe(value):
    """``value`` (nested dicts and lists) with NaN and infinities as None: strict JSON readers refuse NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(entry) for key, entry in value.items()}
    if isinstance(value, list):
        return [json_safe(entry) for entry in value]
    return value


def grid(
    labels: Sequence[str],
    areas: Sequence[float],
    itas: Sequence[float],
    centres: Sequence[tuple[float, float]] = ((0.5, 0.5),),
    repeats: int = 1,
) -> list[MapParams]:
    """Every combination of the requested attributes, ``repeats`` times (elliptical, round lesions)."""
    requests = [
        MapParams(label, area, cx, cy, ita)
        for label, area, ita, (cx, cy) in itertools.product(labels, areas, itas, centres)
    ]
    return [request for request in requests for _ in range(repeats)]


def backend_renderer(backend, batch_size: int = 0) -> Renderer:
    """A renderer that samples a conditional backend with one parameter dict per image."""
    from skingenbench.services.generation.core.backend import SamplerOptions

    def render(seeds: list[int], params: list[MapParams]) -> np.ndarray:
        return backend.sample(seeds, SamplerOptions(batch_size=batch_size), [p.to_dict() for p in params])

    return render


def measure_controllability(
    render: Renderer,
    requests: Sequence[MapParams],
    seed: int = 0,
    classify: Callable[[np.ndarray], Sequence[str]] | None = None,
    batch_size: int = 64,
    on_batch: Callable[[int, int], None] | None = None,
) -> ControllabilityReport:
    """Render every request (image i with seed ``seed + i``), measure it, and compare per attribute.

    ``on_batch(done, total)`` is called after every rendered batch (progress; it may raise to stop)."""
    requests = list(requests)
    rows: list[dict] = []
    for start in range(0, len(requests), batch_size):
        chunk = requests[start : start + batch_size]
        seeds = [seed + start + i for i in range(len(chunk))]
        images = render(seeds, chunk)
        predicted = list(classify(images)) if classify is not None else [None] * len(chunk)
        for image_seed, request, image, label in zip(seeds, chunk, images, predicted, strict=True):
            rows.append(
                {
                    "seed": image_seed,
                    "requested": request.to_dict(),
                    "measured": asdict(measure_image(image)),
                    "predicted_class": label,
                }
            )
        if on_batch is not None:
            on_batch(len(rows), len(requests))

    def compare(selected: list[dict]) -> dict[str, Agreement]:
        return {
            name: agreement(
                [row["requested"][name] for row in selected], [row["measured"][name] for row in selected]
            )
            for name in ATTRIBUTES
        }

    classes = sorted({row["requested"]["label"] for row in rows})
    per_class = {
        name: compare([row for row in rows if row["requested"]["label"] == name]) for name in classes
    }
    accuracy = None
    if classify is not None and rows:
        accuracy = float(np.mean([row["predicted_class"] == row["requested"]["label"] for row in rows]))
    return ControllabilityReport(compare(rows), per_class, accuracy, rows)


def _number(value: float | None, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def _agreement_rows(attributes: dict[str, Agreement]) -> list[str]:
    return [
        f"| {name} | {a.count} | {a.failures} | {_number(a.mean_absolute_error, '.4g')} | {_number(a.bias, '+.4g')} "
        f"| {_number(a.pearson, '.3f')} | {_number(a.spearman, '.3f')} |"
        for name, a in attributes.items()
    ]


def by_requested_tone(report: ControllabilityReport) -> list[dict]:
    """Per requested ITA: the measured skin ITA (mean), its error, and the lesion-size error there.

    Control that holds for light skin but not for dark is the failure this platform looks for: public
    dermoscopy data is mostly light skin (Groh et al. 2021), so dark tones are extrapolation."""
    rows = []
    for requested in sorted({row["requested"]["ita_degrees"] for row in report.rows}):
        chosen = [row for row in report.rows if row["requested"]["ita_degrees"] == requested]
        itas = [
            row["measured"]["ita_degrees"] for row in chosen if row["measured"]["ita_degrees"] is not None
        ]
        area_errors = [
            abs(row["measured"]["lesion_area_fraction"] - row["requested"]["lesion_area_fraction"])
            for row in chosen
            if row["measured"]["lesion_area_fraction"] is not None
        ]
        rows.append(
            {
                "requested_ita": requested,
                "images": len(chosen),
                "measured_ita_mean": float(np.mean(itas)) if itas else None,
                "ita_mae": float(np.mean([abs(i - requested) for i in itas])) if itas else None,
                "area_mae": float(np.mean(area_errors)) if area_errors else None,
                "lesion_not_found": sum(row["measured"]["lesion_area_fraction"] is None for row in chosen),
            }
        )
    return rows


def report_markdown(report: ControllabilityReport, title: str = "Controllability") -> str:
    """The report as Markdown: overall and per-class agreement, and agreement by requested skin tone."""
    header = [
        "| attribute | measured | failures | MAE | bias | Pearson r | Spearman rho |",
        "|---|---|---|---|---|---|---|",
    ]
    lines = [
        f"### {title}",
        "",
        f"{len(report.rows)} images; lesion measured by the preprocessing stage's segmentation, skin tone by its "
        "ITA estimate outside the lesion. Areas and centres are fractions of the image; ITA in degrees.",
        "",
        *header,
        *_agreement_rows(report.attributes),
        "",
    ]
    if report.class_accuracy is not None:
        lines += [f"Classified as the requested class: {report.class_accuracy:.1%}", ""]
    if len(report.per_class) > 1:
        for label, attributes in report.per_class.items():
            lines += [f"#### {label}", "", *header, *_agreement_rows(attributes), ""]
    lines += [
        "#### By requested skin tone",
        "",
        "| requested ITA | images | measured ITA (mean) | ITA MAE | area MAE | no lesion found |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['requested_ita']:g} | {r['images']} | {_number(r['measured_ita_mean'], '.1f')} | "
        f"{_number(r['ita_mae'], '.1f')} | {_number(r['area_mae'], '.4f')} | {r['lesion_not_found']} |"
        for r in by_requested_tone(report)
    ]
    return "\n".join(lines) + "\n"
