"""The synthetic-set quality gate (issue 18 item 4): which synthetic images may enter classifier training.

An image is rejected when it looks memorized, i.e. its nearest real training image is within the
evaluation service's memorization threshold (``services/evaluation/core/memorization.py``: cosine
distance at most the threshold, or SSIM at least its SSIM threshold — the pair's ``flagged``), or when a
measured lesion/skin statistic (ITA of the skin outside the lesion, lesion area fraction, as the
preprocessing/imaging core measures them) lies outside the range of the real training images, widened
by ``margin`` × that range's width. One image can be rejected for several reasons; the report counts
each reason and the images rejected at all.

A pure function over what the services already return (the evaluation result's memorization pairs and
per-image statistics), so the gate can be checked without running a service. In a grid
(``quality_gate: {enabled: true}``) the flow measures each training mix with the arm's own preprocessing
pipeline (the same measurement the real training images got), runs the evaluation service's memorization
check of the mix against the real training images of the synthetic label, applies the gate
(``gate_inputs`` pairs the three manifests up) and sends the rejected ids as the classifier's
``exclude_synthetic``. Off (the default), no request changes: every job is the one it was.
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


def _image_name(item: Mapping[str, Any]) -> str:
    """How the services name a manifest item (evaluation pair ids, ``exclude_synthetic``)."""
    return str(item.get("image_id") or item["key"])


def gate_inputs(
    synthetic: Mapping[str, Any], measured: Mapping[str, Any], real: Mapping[str, Any], label: str
) -> tuple[list[str], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """(synthetic ids, their measured statistics by id, the real training images' statistics) from three
    manifests as JSON: the training mix, the mix measured by preprocessing (each item's ``parent_key`` is
    the mix item's key) and the real arm's training manifest, whose ``label`` items of the train split
    give the range (the images the generator learned from)."""
    by_key = {item["key"]: _image_name(item) for item in synthetic["items"]}
    ids = [_image_name(item) for item in synthetic["items"] if item.get("label", label) == label]
    stats = {}
    for item in measured["items"]:
        name = by_key.get(item.get("meta", {}).get("parent_key", ""))
        if name is not None:
            stats[name] = {key: item["meta"].get(key) for key in STATISTICS}
    real_stats = [
        {key: item.get("meta", {}).get(key) for key in STATISTICS}
        for item in real["items"]
        if item.get("label") == label and item.get("split", "train") in ("", "train")
    ]
    return ids, stats, real_stats


def gate_summary(gate: Mapping[str, Any], requested: int) -> dict[str, Any]:
    """What the run keeps of a gate (the report's row): counts, ranges, and the rejected ids with why."""
    accepted = len(gate["accepted"])
    return {
        "checked": gate["checked"],
        "accepted_count": accepted,
        "rejected_count": gate["rejected_count"],
        "reason_counts": gate["reason_counts"],
        "unmeasured": gate["unmeasured"],
        "ranges": gate["ranges"],
        "margin": gate["margin"],
        "rejected": gate["rejected"],
        "requested": requested,
    }


def trained_count(requested: int, accepted: int) -> int:
    """Synthetic images a gated cell trains on: as many as asked, or all that passed when fewer did
    (0 is then the empty pool, not the service's 'all')."""
    return min(requested, accepted)


def gate_markdown(gates: Mapping[str, Mapping[str, Any]]) -> str:
    """The report's lines: per synthetic set, how many images were checked and rejected, and why."""
    if not gates:
        return ""
    lines = ["| synthetic set | checked | rejected | reasons |", "|---|---|---|---|"]
    for name, gate in sorted(gates.items()):
        reasons = ", ".join(f"{r}: {n}" for r, n in gate["reason_counts"].items()) or "none"
        lines.append(f"| {name} | {gate['checked']} | {gate['rejected_count']} | {reasons} |")
    return "\n".join(lines) + "\n"


def _range_text(ranges: Mapping[str, Sequence[float]]) -> str:
    return "; ".join(f"{name} [{low:.3g}, {high:.3g}]" for name, (low, high) in sorted(ranges.items()))


def report_section(ctx: Any) -> Any:
    """The report's section (None when the grid's gate is off): the table, the ranges, short cells."""
    from skingenbench.flows.report import Section

    gates = ctx.run.get("quality_gate") or {}
    if not gates:
        return None
    config = ctx.run.get("grid", {}).get("quality_gate", {})
    checks = [name for name in (MEMORIZED, *STATISTICS) if config.get(name, True)]
    body = [
        "Synthetic images were checked before they entered classifier training; a rejected image is left "
        "out of every cell that draws from its set (`exclude_synthetic`). Checks: "
        + ", ".join(checks)
        + f" (memorized: the nearest real training image within the evaluation's memorization threshold; "
        f"a statistic: outside the range of the real training {ctx.run.get('grid', {}).get('synthetic_label', 'MEL')} "
        f"images widened by margin {float(config.get('margin', 0.0)):g} × its width).\n",
        gate_markdown(gates),
    ]
    ctx.tables["quality_gate"] = [
        {
            "synthetic_set": name,
            "checked": gate["checked"],
            "accepted": gate["accepted_count"],
            "rejected": gate["rejected_count"],
            **{f"rejected_{reason}": count for reason, count in gate["reason_counts"].items()},
        }
        for name, gate in sorted(gates.items())
    ]
    ranges = [
        f"- {name}: {_range_text(gate['ranges'])}" for name, gate in sorted(gates.items()) if gate["ranges"]
    ]
    if ranges:
        body += ["Real training ranges the statistics were held to:\n", *ranges, ""]
    short = [
        f"- {name}: {gate['accepted_count']} of its {gate['requested']} images passed; a cell asking for more "
        f"trained on those {gate['accepted_count']}"
        for name, gate in sorted(gates.items())
        if gate["accepted_count"] < gate["requested"]
    ]
    if short:
        body += ["Sets the gate left short of the requested count:\n", *short, ""]
    return Section("quality-gate", "Synthetic-set quality gate", "\n".join(body))
