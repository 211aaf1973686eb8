"""``make bench``: run the benchmarks and write their results to a JSON file.

Speed targets are checked here, not in tests (shared machines are noisy). Every result records the
machine it ran on, so numbers from different devices are never compared by accident.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import traceback
from pathlib import Path


def _machine() -> dict[str, str]:
    from skingenbench.services.core.device import describe_device
    from skingenbench.services.core.version import code_version

    return {
        "host": platform.node(),
        "python": platform.python_version(),
        "cpus": str(os.cpu_count()),
        "device": describe_device(),
        "code_version": code_version(),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        # How busy the machine was when the run started: ratios come from alternating pairs so that load hits
        # both sides alike, but absolute rates on a loaded machine are not the machine's.
        "load_average_1_5_15": " ".join(f"{v:.1f}" for v in os.getloadavg()),
    }


# "flow_concurrency": the flow keeping 16 simulated endpoints busy (bench/flow_concurrency.py, ~2 min).
SUITES = ("preprocessing", "generation", "evaluation", "classification", "flow_concurrency")


def _write(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench/results/latest.json")
    parser.add_argument("--only", nargs="*", choices=SUITES, help="run only these suites")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test of the benchmarks)")
    args = parser.parse_args(argv)
    results = {"machine": _machine(), "quick": args.quick, "suites": {}}
    failed = False
    for suite in args.only or SUITES:
        print(f"[bench] {suite} …", flush=True)
        try:
            module = __import__(f"bench.{suite}", fromlist=["run"])
            results["suites"][suite] = module.run(quick=args.quick)
        except Exception as exc:  # one broken suite must not hide the others' numbers
            failed = True
            results["suites"][suite] = {
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        print(json.dumps(results["suites"][suite], indent=1)[:2000], flush=True)
        _write(Path(args.out).with_suffix(".partial.json"), results)  # what is done survives a stop
    results["machine"]["load_average_at_end"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    out = Path(args.out)
    out.with_suffix(".partial.json").unlink(missing_ok=True)
    if args.only and out.is_file():  # a partial run replaces its own suites and keeps everyone else's
        earlier = json.loads(out.read_text())
        kept = {k: v for k, v in earlier.get("suites", {}).items() if k not in results["suites"]}
        for value in kept.values():
            if isinstance(value, dict):
                value.setdefault("machine", earlier.get("machine"))
        results["suites"] = {**kept, **results["suites"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"[bench] results written to {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
