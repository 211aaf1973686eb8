"""Run one measurement in a fresh Python process and read back its result and its own peak memory.

``python -m bench.fresh MODULE:FUNCTION '{"keyword": "arguments"}'`` calls the function and prints one
JSON line: ``{"result": ..., "peak_rss_mib": ...}``. The peak is the child's ``VmHWM`` (the high-water
mark of its own address space, from ``/proc/self/status``), not ``getrusage``'s ``ru_maxrss``: Linux
carries ``ru_maxrss`` over ``fork`` + ``exec``, so a child of a large bench parent reports the parent's
peak (which is how a 1k and a 10k run once both read 643.1 MiB).

``measure_in_fresh_process`` is the parent's side; ``alternating_pairs`` runs a project and a peer
measurement alternately, each in its own process, and summarises their ratios by median and spread.
"""

from __future__ import annotations

import importlib
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MARKER = "BENCH-RESULT "


def own_peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM) in MiB; Linux only, as the bench machines are."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def measure_in_fresh_process(target: str, timeout_s: float = 3600, **kwargs: Any) -> dict[str, Any]:
    """Run ``target`` ("module:function") with ``kwargs`` in a new interpreter; its result and peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.fresh", target, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=timeout_s,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{target} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARKER) :])


def spread(values: list[float], digits: int = 4) -> dict[str, Any]:
    """Median, min, max and every value (to ``digits`` significant digits): what a ratio is reported with."""

    def significant(value: float) -> float:
        return float(f"{value:.{digits}g}")

    return {
        "median": significant(statistics.median(values)),
        "min": significant(min(values)),
        "max": significant(max(values)),
        "values": [significant(v) for v in values],
    }


def alternating_pairs(
    project: Callable[[], float], peer: Callable[[], float], pairs: int = 5
) -> dict[str, Any]:
    """Run ``project`` and ``peer`` alternately (the order swapped every pair, so neither always runs
    on a warmer or quieter machine); each returns a rate (higher is better). The ratio of each pair is
    project / peer; the summary is the median of those ratios and their spread."""
    project_rates, peer_rates, ratios = [], [], []
    for index in range(pairs):
        if index % 2:
            peer_rate, project_rate = peer(), project()
        else:
            project_rate, peer_rate = project(), peer()
        project_rates.append(project_rate)
        peer_rates.append(peer_rate)
        ratios.append(project_rate / peer_rate)
    return {
        "pairs": pairs,
        "project": spread(project_rates),
        "peer": spread(peer_rates),
        "ratio": spread(ratios),
    }


def main() -> None:
    module_name, function_name = sys.argv[1].split(":")
    kwargs = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    result = getattr(importlib.import_module(module_name), function_name)(**kwargs)
    print(MARKER + json.dumps({"result": result, "peak_rss_mib": round(own_peak_rss_mib(), 1)}), flush=True)


if __name__ == "__main__":
    main()
