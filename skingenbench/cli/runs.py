"""``skingenbench runs``: the finished grid runs and where their reports are.

A run is finished when its report exists: ``skingenbench run`` writes ``report.md`` last, locally under
``--runs-dir/<run-id>/`` and in the store under ``runs/<run-id>/`` beside ``run.json`` (the run's record,
flows/report.py). Both places are listed, so a run made on another machine against the same store shows
up with its store URI.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from skingenbench.cli.options import add_output_arguments, print_json


def _store(args: argparse.Namespace):
    from skingenbench.cli import stack
    from skingenbench.services.platform.store import store_from_uri

    return store_from_uri(
        args.store or os.environ.get("SKINGENBENCH_STORE") or (stack.home() / "store").as_uri()
    )


def _grid_of(record: dict[str, Any]) -> tuple[str, int]:
    grid = record.get("grid") or {}
    return str(grid.get("name", "")), len(record.get("tests") or {})


def finished_runs(runs_dir: Path, store) -> list[dict[str, Any]]:
    """One row per run id: grid name, test cells, when the report was written, local and store paths."""
    runs: dict[str, dict[str, Any]] = {}
    if runs_dir.is_dir():
        for report in runs_dir.glob("*/report.md"):
            folder = report.parent
            row = runs.setdefault(folder.name, {"run_id": folder.name})
            row["report"] = str(report.resolve())
            row["html"] = str((folder / "report.html").resolve())
            row["finished"] = _dt.datetime.fromtimestamp(report.stat().st_mtime).isoformat(timespec="seconds")
            if (folder / "run.json").is_file():
                row["grid"], row["cells"] = _grid_of(json.loads((folder / "run.json").read_text()))
    if store is not None:
        for key in store.list("runs/"):
            parts = key.split("/")
            if len(parts) != 3 or parts[2] != "report.md":
                continue
            row = runs.setdefault(parts[1], {"run_id": parts[1]})
            row["store_report"] = store.uri(key)
            if "grid" not in row and store.exists(f"runs/{parts[1]}/run.json"):
                row["grid"], row["cells"] = _grid_of(json.loads(store.get_bytes(f"runs/{parts[1]}/run.json")))
    return sorted(runs.values(), key=lambda r: (r.get("finished", ""), r["run_id"]), reverse=True)


def _cmd_runs(args: argparse.Namespace) -> int:
    from skingenbench.services.core.errors import SkinGenBenchError

    try:
        store = _store(args)
        rows = finished_runs(Path(args.runs_dir), store)
    except (SkinGenBenchError, OSError) as error:  # an unreachable S3 store: still list local runs
        print(f"warning: the store could not be listed: {error}")
        rows = finished_runs(Path(args.runs_dir), None)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print(f"no finished runs in {args.runs_dir}/ or the store (start one with `skingenbench run`)")
        return 0
    for row in rows:
        cells = f"{row['cells']} test cells" if row.get("cells") else ""
        print(f"{row['run_id']}  grid {row.get('grid') or '?'}  {cells}  {row.get('finished', '')}".rstrip())
        print(f"  report: {row.get('report') or row.get('store_report')}")
        if row.get("report") and row.get("store_report"):
            print(f"  store:  {row['store_report']}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    runs = commands.add_parser("runs", help="finished grid runs and the paths of their reports")
    runs.add_argument("--runs-dir", default="runs", help="where `skingenbench run` wrote them (default runs)")
    runs.add_argument(
        "--store",
        default="",
        help="the runs' store (default: SKINGENBENCH_STORE, else $SKINGENBENCH_HOME/store)",
    )
    add_output_arguments(runs)
    runs.set_defaults(func=_cmd_runs)
