"""The flow's concurrency on 16 endpoints (issue 20 item 4): the grid's 150 classifier cells on 16 real
one-slot classification servers with fast fake jobs (tests/flows/flow_simulation.py), under a real
local Prefect server. Writes bench/results/flow-concurrency.json: the most endpoints busy at once, the
time-weighted mean while work waited, the endpoints used, the makespan against the ideal.

    .venv/bin/python bench/flow_concurrency.py [--endpoints 16] [--train-s 0.4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "flow-concurrency.json"


def _import_simulation():
    # The repository's tests/ folder (a namespace package; an installed package named "tests" would hide it).
    sys.path.insert(0, str(ROOT))
    package = types.ModuleType("tests")
    package.__path__ = [str(ROOT / "tests")]
    sys.modules.setdefault("tests", package)
    if getattr(sys.modules["tests"], "__path__", None) != package.__path__:
        sys.modules["tests"] = package
    from tests.flows import flow_simulation

    return flow_simulation


def measure(endpoints: int = 16, train_s: float | None = None) -> dict:
    """One simulated classifier phase under a local Prefect server: what ``latest.json`` and
    ``flow-concurrency.json`` record."""
    simulation = _import_simulation()
    defaults = dict(simulation.DURATIONS)
    if train_s:  # scaled for this measurement only (the next one starts from the simulation's own)
        scale = train_s / defaults["train_classifier"]
        simulation.DURATIONS.update({k: v * scale for k, v in defaults.items()})
    from prefect.testing.utilities import prefect_test_harness
    from skingenbench.services.platform.store import LocalFolderStore

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder, prefect_test_harness(server_startup_timeout=180):
        numbers = simulation.simulate(LocalFolderStore(Path(folder) / "store"), endpoints=endpoints)
    numbers.pop("snapshot", None)
    durations = dict(simulation.DURATIONS)
    simulation.DURATIONS.update(defaults)
    return {
        "what": "flow classifier phase: 150 cells (train, test, compare) on one-slot endpoints, fake jobs",
        "job_seconds": durations,
        "wall_s": round(time.monotonic() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 1),  # other work on the machine meanwhile
            "python": platform.python_version(),
        },
        **numbers,
    }


def run(quick: bool = False) -> dict:
    """``make bench``'s flow suite: the simulation's own job times (1.5 s fake trainings), and four times
    longer ones. Each job's start and finish on its server cost the same CPU either way, which on 2
    cores is most of what keeps an endpoint idle between jobs; real training jobs take minutes.
    ``quick`` leaves out the longer run."""
    short = measure()
    return short if quick else {**short, "train_6s": measure(train_s=6.0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=16)
    parser.add_argument("--train-s", type=float, default=None, help="seconds per fake training job")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    result = measure(args.endpoints, args.train_s)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
