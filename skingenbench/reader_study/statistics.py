"""What a reader study measures: accuracy, sensitivity and specificity for spotting synthetic images,
inter-reader agreement, and whether readers diagnose synthetic images as the class the generator was asked for.

- Proportions carry a Wilson score interval (Wilson 1927, "Probable inference, the law of succession, and
  statistical inference", JASA 22:209-212): unlike the normal ("Wald") interval it stays inside [0, 1] and
  keeps its coverage at the small counts a reader study has.
- "Positive" is *synthetic*: sensitivity is the share of synthetic images called synthetic, specificity the
  share of real images called real (DermGAN's Turing test, Ghorbani et al. 2019, reports the same pair).
  Accuracy near 0.5 with an interval that holds 0.5 means readers could not tell the sets apart.
- Inter-reader agreement is Fleiss' kappa (Fleiss 1971, "Measuring nominal scale agreement among many
  raters", Psychological Bulletin 76:378-382) over the images every reader answered.
- Diagnosis agreement: of the synthetic images a reader gave a diagnosis for, the share diagnosed as the
  requested class; the same share on real images (against their ground truth) is the baseline it is read
  against — a reader who diagnoses real images at 60% cannot be expected to do better on synthetic ones.

Pooled figures count every answer of every reader once; answers of one reader are not independent of each
other, so a pooled interval is narrower than a per-reader one for a reason that is not only more data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

from skingenbench.reader_study.answers import ReaderAnswers
from skingenbench.reader_study.reading_list import CALLS, REAL, SYNTHETIC, Study

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Proportion:
    successes: int
    total: int
    value: float | None  # None when total is 0
    low: float | None
    high: float | None


def wilson_interval(successes: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion (Wilson 1927)."""
    if total <= 0 or not 0 <= successes <= total:
        raise ValueError(f"need 0 <= successes <= total and total > 0 (got {successes}/{total})")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p, n, z2 = successes / total, total, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(successes: int, total: int, confidence: float = CONFIDENCE) -> Proportion:
    if total == 0:
        return Proportion(0, 0, None, None, None)
    low, high = wilson_interval(successes, total, confidence)
    return Proportion(successes, total, successes / total, low, high)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa from an items x categories table of how many raters chose each category (Fleiss 1971).

    Every item must have the same number of raters (at least 2). None when chance agreement is 1 (every
    rating in one category): kappa is 0/0 there, and no number is better than a made-up one.
    """
    if not counts:
        raise ValueError("Fleiss' kappa needs at least one item")
    raters = {sum(row) for row in counts}
    if len(raters) != 1 or (n := raters.pop()) < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings on every item")
    items = len(counts)
    share = [sum(row[j] for row in counts) / (items * n) for j in range(len(counts[0]))]
    agreement = [(sum(c * c for c in row) - n) / (n * (n - 1)) for row in counts]
    observed, chance = sum(agreement) / items, sum(p * p for p in share)
    if math.isclose(chance, 1.0):
        return None
    return (observed - chance) / (1 - chance)


def _reader_figures(study: Study, answers: Iterable[Any]) -> dict[str, Proportion]:
    truth = {item.image_id: item for item in study.items}
    rows = [(truth[a.image_id], a) for a in answers if a.image_id in truth]
    syn = [(i, a) for i, a in rows if i.truth == SYNTHETIC]
    real = [(i, a) for i, a in rows if i.truth == REAL]
    syn_dx = [(i, a) for i, a in syn if a.diagnosis]
    real_dx = [(i, a) for i, a in real if a.diagnosis]
    return {
        "accuracy": proportion(sum(a.call == i.truth for i, a in rows), len(rows)),
        "sensitivity": proportion(sum(a.call == SYNTHETIC for _, a in syn), len(syn)),
        "specificity": proportion(sum(a.call == REAL for _, a in real), len(real)),
        "diagnosis_synthetic": proportion(sum(a.diagnosis == i.label for i, a in syn_dx), len(syn_dx)),
        "diagnosis_real": proportion(sum(a.diagnosis == i.label for i, a in real_dx), len(real_dx)),
    }


def agreement(study: Study, readers: Sequence[ReaderAnswers]) -> dict[str, Any]:
    """Fleiss' kappa of the real/synthetic calls over the images every reader (with any answer) answered."""
    readers = [r for r in readers if r.answers]
    answered = [r.answered() for r in readers]
    common = [item.image_id for item in study.items if all(item.image_id in a for a in answered)]
    result: dict[str, Any] = {"readers": len(readers), "images": len(common), "fleiss_kappa": None}
    if len(readers) >= 2 and common:
        table = [[sum(a[image_id].call == call for a in answered) for call in CALLS] for image_id in common]
        result["fleiss_kappa"] = fleiss_kappa(table)
    return result


def study_report(study: Study, readers: Sequence[ReaderAnswers]) -> dict[str, Any]:
    """Every figure, per reader and pooled, as plain JSON-ready data."""

    def figures(answers: Iterable[Any]) -> dict[str, Any]:
        return {name: asdict(p) for name, p in _reader_figures(study, answers).items()}

    per_reader = {
        r.reader: {"answered": len(r.answers), "of": len(study.items), **figures(r.answers)}
        for r in sorted(readers, key=lambda r: r.reader)
    }
    pooled_answers = [a for r in readers for a in r.answers]
    pooled = {"answered": len(pooled_answers), **figures(pooled_answers)}
    accuracy = pooled["accuracy"]
    return {
        "study_id": study.study_id,
        "images": len(study.items),
        "synthetic_images": sum(i.truth == SYNTHETIC for i in study.items),
        "confidence": CONFIDENCE,
        "readers": per_reader,
        "pooled": pooled,
        # Readers could not tell the sets apart (at this confidence) when the interval holds chance.
        "indistinguishable": None
        if accuracy["value"] is None
        else accuracy["low"] <= 0.5 <= accuracy["high"],
        "agreement": agreement(study, readers),
    }
