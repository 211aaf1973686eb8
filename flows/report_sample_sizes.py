"""The report's lines on synthetic sample sizes: how many images per generator were mixed into training and
how many FID/KID/IS were computed on (grid.py: two separate counts), and the evaluation service's
warnings where a generative metric ran below its documented minimum (services/evaluation/core/sample_size.py).

``report.py`` calls ``sample_size_lines`` once, in its setup section, and puts ``sample_size_results`` into
``results.json``; everything here reads the run's collected data only (no store access).
"""

from __future__ import annotations

from typing import Any


def _evaluations(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        prep: (evaluation or {}).get("result") or {}
        for prep, evaluation in (run.get("evaluations") or {}).items()
    }


def sample_size_lines(run: dict[str, Any]) -> list[str]:
    """Markdown: the two synthetic counts, then the sample-size warnings grouped by metric (each arm's
    Generative metrics section lists them one by one)."""
    lines: list[str] = []
    counts = run.get("synthetic_counts") or {}
    if counts:
        mix_first, mix_last = counts["training_mix_seeds"]
        eval_first, eval_last = counts["evaluation_seeds"]
        lines += [
            "",
            f"Synthetic images per generator: **{counts['training_mix']:,} mixed into training** "
            f"({counts['training_mix_rule']}; seeds {mix_first}–{mix_last}) and **{counts['evaluation']:,} "
            f"for FID/KID/IS** (seeds {eval_first}–{eval_last}; the reference study used "
            f"{counts['reference_evaluation']:,}, seeds 0–{counts['reference_evaluation'] - 1}).",
        ]
    grouped: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for prep, result in _evaluations(run).items():
        for warning in (result.get("sample_sizes") or {}).get("below_minimum", []):
            grouped.setdefault(warning["metric"], []).append((prep, warning))
    if grouped:
        lines += [
            "",
            "> **⚠ Generative metrics below their documented sample-size minimums** — these numbers compare "
            "only with values at the same N, not with published ones:",
        ]
        for metric, entries in grouped.items():
            counts_seen = sorted({w["count"] for _, w in entries})
            sets = sorted({f"{prep}/{w['set']}" if w["set"] else prep for prep, w in entries})
            span = (
                f"{counts_seen[0]:,}" if len(counts_seen) == 1 else f"{counts_seen[0]:,}–{counts_seen[-1]:,}"
            )
            lines.append(
                f"> - `{metric}`: {len(entries)} × (N = {span}; minimum {entries[0][1]['minimum']:,}) — "
                f"{', '.join(sets)}. {entries[0][1]['message']}"
            )
    return lines


def sample_size_results(run: dict[str, Any]) -> dict[str, Any]:
    """For results.json: the synthetic counts and each arm's sample sizes and warnings."""
    return {
        "synthetic_counts": run.get("synthetic_counts") or {},
        "generative_sample_sizes": {
            prep: {"sample_sizes": result.get("sample_sizes", {}), "warnings": result.get("warnings", [])}
            for prep, result in _evaluations(run).items()
        },
    }
