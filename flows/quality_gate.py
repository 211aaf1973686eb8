"""The synthetic-set quality gate (issue 18 item 4): which synthetic images may enter classifier training.

An image is rejected when it looks memorized, i.e. its nearest real training image is within the
evaluation service's memorization threshold (``services/evaluation/core/memorization.py``: cosine
distance at most the threshold, or SSIM at least its SSIM threshold — the pair's ``flagged``), or when a
measured lesion/skin statistic (ITA of the skin outside the lesion, lesion area fraction, as the
preprocessing/imaging core measures them) lies outside the range of the real training images, widened
by ``margin`` × that range's width. One image can be rejected for several reasons; the report counts
each reason and the images rejected at all.

A pure function over what the services already return (the evaluation result's memorization pairs and
per-image statistics), so the gate can be checked without running a service.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

STATISTICS = ("lesion_area_fraction", "ita_degrees")
MEMORIZED = "memorized"


def real_ranges(
    real_stats: Sequence[Mapping[str, Any]], statistics: Sequence[str] = STATISTICS, margin: float = 0.0
) -> dict[str, tuple[float, float]]:
    """Per statistic, [min, max] of the real training images (finite values only), widened by
    ``margin`` × (max − min) on each side; a statistic no real image has is left out (not gated)."""
    ranges = {}
    for name in statistics:
        values = [float(s[name]) for s in real_stats if _finite(s.get(name))]
        if values:
            low, high = min(values), max(values)
            width = high - low
            ranges[name] = (low - margin * width, high + margin * width)
    return ranges


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def apply_quality_gate(
    synthetic_ids: Sequence[str],
    *,
    memorization_pairs: Sequence[Mapping[str, Any]] = (),
    synthetic_stats: Mapping[str, Mapping[str, Any]] | None = None,
    real_stats: Sequence[Mapping[str, Any]] = (),
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Accepted and rejected synthetic image ids, the reasons per rejected image and the counts.

    ``config``: the grid's ``quality_gate`` (``memorization``, ``lesion_area_fraction``, ``ita_degrees``:
    which checks run, all by default; ``margin``). An image without a measured statistic is not rejected
    for it (it is counted under ``unmeasured``): the gate removes what is shown to be out of range.
    """
    config = dict(config or {})
    margin = float(config.get("margin", 0.0))
    checked = [name for name in STATISTICS if config.get(name, True)]
    ranges = real_ranges(real_stats, checked, margin)
    flagged = (
        {str(p["synthetic"]) for p in memorization_pairs if p.get("flagged")}
        if config.get("memorization", True)
        else set()
    )
    synthetic_stats = synthetic_stats or {}
    reasons: dict[str, list[str]] = {}
    unmeasured = {name: 0 for name in ranges}
    for image_id in synthetic_ids:
        why = [MEMORIZED] if image_id in flagged else []
        stats = synthetic_stats.get(image_id, {})
        for name, (low, high) in ranges.items():
            value = stats.get(name)
            if not _finite(value):
                unmeasured[name] += 1
            elif not low <= float(value) <= high:
                why.append(f"{name} outside the real training range")
        if why:
            reasons[image_id] = why
    counts: dict[str, int] = {}
    for why in reasons.values():
        for reason in why:
            counts[reason] = counts.get(reason, 0) + 1
    return {
        "checked": len(synthetic_ids),
        "accepted": [i for i in synthetic_ids if i not in reasons],
        "rejected": reasons,
        "rejected_count": len(reasons),
        "reason_counts": dict(sorted(counts.items())),
        "unmeasured": unmeasured,
        "ranges": {name: list(bounds) for name, bounds in ranges.items()},
        "margin": margin,
    }


def gate_markdown(gates: Mapping[str, Mapping[str, Any]]) -> str:
    """The report's lines: per synthetic set, how many images were checked and rejected, and why."""
    if not gates:
        return ""
    lines = ["| synthetic set | checked | rejected | reasons |", "|---|---|---|---|"]
    for name, gate in sorted(gates.items()):
        reasons = ", ".join(f"{r}: {n}" for r, n in gate["reason_counts"].items()) or "none"
        lines.append(f"| {name} | {gate['checked']} | {gate['rejected_count']} | {reasons} |")
    return "\n".join(lines) + "\n"
