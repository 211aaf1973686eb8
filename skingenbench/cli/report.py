"""``skingenbench report RUN`` prints a finished run's report; ``skingenbench report check RUN`` recomputes
its tables from what the run stored and fails on any difference.

The check reads the run's record (``runs/<run-id>/run.json`` in the store, written with the report) and,
for every test job of the run, its per-image predictions (``predictions.csv``) and the labels of the
test manifest it scored. From those alone it recomputes, with the classification service's own metric
code (``metrics``, ``bootstrap``, ``paired_tests``; numpy and SciPy, no torch):

1. each test job's metrics and intervals (``evaluate_predictions`` with the job's bootstrap settings),
   compared with the job's ``result_json``; the predictions copied into ``result_json`` must equal the
   CSV exactly;
2. each paired comparison (``compare_pipelines`` on the rescored predictions, with the comparison's
   resample count and the cell's seed, as the flow requested it), compared with ``comparison_json``;
3. the report's classifier tables and statistics (``flows/report_tables.py`` on the rescored inputs),
   compared with the stored ``tables.json`` and ``results.json``; the run's other tables are rendered
   again from the record (``flows/report.build_report``) and compared too.

Any difference is printed as ``where: stored X, recomputed Y`` and the command exits 1. Numbers
recomputed by the metric code may differ by a relative ``--tolerance`` (default 1e-9: floating-point
summation order); copies (predictions, labels, table text) must be identical.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

MAX_PRINTED = 60


class Differences:
    """Collects ``where: stored X, recomputed Y`` lines."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.lines: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{where}: {message}")

    def compare(self, where: str, stored: Any, recomputed: Any, exact: bool = False) -> None:
        if isinstance(stored, dict) and isinstance(recomputed, dict):
            for key in sorted(set(stored) | set(recomputed), key=str):
                if key not in stored:
                    self.add(f"{where}.{key}", f"not stored, recomputed {_short(recomputed[key])}")
                elif key not in recomputed:
                    self.add(f"{where}.{key}", f"stored {_short(stored[key])}, not recomputed")
                else:
                    self.compare(f"{where}.{key}", stored[key], recomputed[key], exact)
        elif isinstance(stored, list) and isinstance(recomputed, list):
            if len(stored) != len(recomputed):
                self.add(where, f"stored {len(stored)} entries, recomputed {len(recomputed)}")
            for index, (a, b) in enumerate(zip(stored, recomputed, strict=False)):
                self.compare(f"{where}[{index}]", a, b, exact)
        elif _is_number(stored) and _is_number(recomputed):
            if not _close(float(stored), float(recomputed), 0.0 if exact else self.tolerance):
                self.add(where, f"stored {stored!r}, recomputed {recomputed!r}")
        elif stored != recomputed:
            self.add(where, f"stored {_short(stored)}, recomputed {_short(recomputed)}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _close(a: float, b: float, tolerance: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= tolerance * max(1.0, abs(a), abs(b))


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _normalised(value: Any) -> Any:
    """What a value reads back as from the stored JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value, default=str))


def _row_label(row: dict[str, Any], index: int) -> str:
    parts = [f"{row[k]}" for k in ("pair", "pipeline", "classifier", "model", "seed", "test") if k in row]
    return " ".join(parts) or f"row {index}"


def _compare_table(differences: Differences, name: str, stored: list, recomputed: list) -> None:
    where = f"tables.json {name}"
    if len(stored) != len(recomputed):
        differences.add(where, f"stored {len(stored)} rows, recomputed {len(recomputed)}")
    for index, (a, b) in enumerate(zip(stored, recomputed, strict=False)):
        label = _row_label(b, index)
        for column in list(dict.fromkeys([*b, *a])):
            if a.get(column) != b.get(column):
                differences.add(
                    f"{where} [{label}] {column}",
                    f"stored {_short(a.get(column))}, recomputed {_short(b.get(column))}",
                )


# -- reading what the run stored ---------------------------------------------------------------------
def _read_json(store, uri_or_key: str) -> Any:
    key = store.key_from_uri(uri_or_key) if "://" in uri_or_key else uri_or_key
    return json.loads(store.get_bytes(key))


def _test_labels(
    store, result: dict[str, Any], where: str, differences: Differences
) -> tuple[dict[str, str], int]:
    """(image id or object key -> label, item count) of the split the test scored, from its manifest."""
    from skingenbench.services.core.hashing import sha256_bytes
    from skingenbench.services.core.manifest import Manifest

    data = result.get("data") or {}
    raw = store.get_bytes(store.key_from_uri(data["uri"]))
    if data.get("sha256") and sha256_bytes(raw) != data["sha256"]:
        differences.add(
            f"{where} data manifest", f"sha256 stored {data['sha256']}, file now {sha256_bytes(raw)}"
        )
    items = [item for item in Manifest.from_json(raw).items if item.split == result.get("split", "test")]
    labels = {item.key: item.label for item in items}
    labels.update({item.image_id: item.label for item in items if item.image_id})
    return labels, len(items)


def _rescored_test(store, key: str, test: dict[str, Any], differences: Differences) -> dict[str, Any] | None:
    """The test result recomputed from predictions.csv and the manifest's labels; compared on the way."""
    from skingenbench.services.classification.core.bootstrap import evaluate_predictions
    from skingenbench.services.classification.core.predictions_csv import read_predictions_csv

    where = f"test {key}"
    outputs = test.get("outputs") or {}
    if "result_json" not in outputs or "predictions_csv" not in outputs:
        differences.add(where, f"the run record names no result_json/predictions_csv ({sorted(outputs)})")
        return None
    stored = _read_json(store, outputs["result_json"])
    classes = list(stored["classes"])
    ids, probs, _ = read_predictions_csv(
        store.get_bytes(store.key_from_uri(outputs["predictions_csv"])).decode(), classes
    )
    labels_of, split_size = _test_labels(store, stored, where, differences)
    missing = [i for i in ids if i not in labels_of]
    if len(ids) != split_size:
        differences.add(f"{where} predictions.csv", f"{len(ids)} rows for {split_size} test images")
    if missing:
        differences.add(
            f"{where} predictions.csv", f"{len(missing)} images not in the test split, e.g. {missing[0]!r}"
        )
        return None
    labels = [labels_of[i] for i in ids]
    predictions = [
        {"image_id": i, "label": label, "probs": [float(v) for v in row]}
        for i, label, row in zip(ids, labels, probs.tolist(), strict=True)
    ]
    differences.compare(
        f"{where} result.json predictions (vs predictions.csv)",
        stored.get("predictions"),
        predictions,
        exact=True,
    )
    bootstrap = stored.get("bootstrap") or {}
    recomputed = evaluate_predictions(
        [classes.index(label) for label in labels],
        probs,
        classes,
        stored.get("positive", "MEL"),
        int(bootstrap.get("n_resamples", 0)),
        bootstrap.get("seed", 0),
        bootstrap.get("level", 0.95),
    )
    for section in ("n", "global", "melanoma", "per_class", "confusion_matrix", "bootstrap", "notes"):
        differences.compare(
            f"{where} result.json {section}", stored.get(section), _normalised(recomputed[section])
        )
    return {**stored, **_normalised(recomputed), "predictions": predictions}


def _rescored_comparison(
    store,
    key: str,
    comparison: dict[str, Any],
    tests: dict[str, dict],
    rescored: dict[str, dict],
    differences,
) -> dict[str, Any] | None:
    from skingenbench.services.classification.core.paired_tests import compare_pipelines

    where = f"comparison {key}"
    stored = _read_json(store, comparison["outputs"]["comparison_json"])
    by_uri = {t["outputs"].get("result_json"): k for k, t in tests.items()}
    baseline_key = by_uri.get((stored.get("baseline") or {}).get("uri"))
    candidate_key = by_uri.get((stored.get("candidate") or {}).get("uri"))
    if candidate_key != key or baseline_key is None:
        differences.add(where, f"compares results outside the run's tests: {candidate_key} vs {baseline_key}")
        return None
    if baseline_key not in rescored or candidate_key not in rescored:
        differences.add(where, "a compared test could not be rescored")
        return None
    baseline, candidate = rescored[baseline_key], rescored[candidate_key]
    ids = [p["image_id"] for p in baseline["predictions"]]
    by_id = {p["image_id"]: p for p in candidate["predictions"]}
    if sorted(by_id) != sorted(ids):
        differences.add(where, "the two tests scored different images")
        return None
    classes = list(baseline["classes"])
    resamples = next(iter((stored.get("paired_bootstrap") or {}).values()), {}).get("n_resamples")
    recomputed = compare_pipelines(
        [classes.index(p["label"]) for p in baseline["predictions"]],
        [by_id[i]["probs"] for i in ids],
        [p["probs"] for p in baseline["predictions"]],
        ids,
        ids,
        classes,
        stored.get("positive", "MEL"),
        int(resamples or 0) or 1000,
        int(key.rsplit("/", 1)[1]),  # the flow compares with the cell's seed
    )
    for section, value in _normalised(recomputed).items():
        differences.compare(f"{where} comparison.json {section}", stored.get(section), value)
    return {**stored, **_normalised(recomputed)}


def check_run(store, run_id: str, tolerance: float = 1e-9) -> tuple[list[str], str]:
    """(differences, summary) for a finished run; no differences means every table reproduced."""
    from skingenbench.flows.report import _metrics_section, build_report
    from skingenbench.flows.report_tables import TABLE_NAMES, classifier_section
    from skingenbench.services.classification.core.bootstrap import DEFAULT_RESAMPLES

    differences = Differences(tolerance)
    folder = f"runs/{run_id}"
    if not store.exists(f"{folder}/run.json"):
        known = sorted({k.split("/")[1] for k in store.list("runs/") if k.count("/") >= 2})
        differences.add(
            folder,
            "no run record (run.json); reports written before `report check` existed have none "
            f"(runs in this store: {', '.join(known) or 'none'})",
        )
        return differences.lines, ""
    record = _read_json(store, f"{folder}/run.json")
    tables = _read_json(store, f"{folder}/tables.json")
    results = _read_json(store, f"{folder}/results.json")

    tests = record.get("tests", {})
    rescored = {}
    for key, test in sorted(tests.items()):
        result = _rescored_test(store, key, test, differences)
        if result is not None:
            rescored[key] = result
    comparisons = {}
    for key, comparison in sorted(record.get("comparisons", {}).items()):
        document = _rescored_comparison(store, key, comparison, tests, rescored, differences)
        if document is not None:
            comparisons[key] = document

    resamples = int((record.get("grid") or {}).get("bootstrap_samples") or DEFAULT_RESAMPLES)
    section = classifier_section(
        {k: _metrics_section(r) for k, r in rescored.items()}, comparisons, resamples
    )
    cells = 0
    for name in TABLE_NAMES:
        recomputed = _normalised(section.tables.get(name, []))
        _compare_table(differences, name, tables.get(name, []), recomputed)
        cells += sum(len(row) for row in recomputed)
    differences.compare("results.json statistics", results.get("statistics"), _normalised(section.statistics))

    try:  # the run's other tables, rendered again from the record by the report's own code
        rendered = _normalised(build_report(store, record).tables)
    except Exception as error:
        differences.add(f"{folder} report", f"could not be rendered again from run.json: {error}")
        rendered = {}
    others = sorted((set(tables) | set(rendered)) - set(TABLE_NAMES))
    for name in others:
        if name not in rendered:
            differences.add(f"tables.json {name}", "stored, not rendered again")
        elif name not in tables:
            differences.add(f"tables.json {name}", "rendered again, not stored")
        else:
            _compare_table(differences, name, tables[name], rendered[name])
    summary = (
        f"{len(rescored)} test results and {len(comparisons)} comparisons recomputed from the stored "
        f"predictions; {len(TABLE_NAMES)} classifier tables ({cells} cells) and {len(others)} other tables "
        "match"
    )
    return differences.lines, summary


# -- the command -------------------------------------------------------------------------------------
def _store(args: argparse.Namespace):
    from skingenbench.cli import stack
    from skingenbench.services.platform.store import store_from_uri

    # The store `skingenbench run` writes to: SKINGENBENCH_STORE, else the home's store folder.
    return store_from_uri(
        args.store or os.environ.get("SKINGENBENCH_STORE") or (stack.home() / "store").as_uri()
    )


def _cmd_check(args: argparse.Namespace, run_id: str) -> int:
    differences, summary = check_run(_store(args), run_id, args.tolerance)
    if differences:
        for line in differences[:MAX_PRINTED]:
            print(line, file=sys.stderr)
        if len(differences) > MAX_PRINTED:
            print(f"... and {len(differences) - MAX_PRINTED} more", file=sys.stderr)
        sources: dict[str, int] = {}
        for line in differences:  # "test A1/resnet18/0 result.json ...", "tables.json paired_tests ..."
            words = line.split(" ")
            source = " ".join(words[:2]) if words[0] in ("test", "comparison", "tables.json") else words[0]
            sources[source.rstrip(":")] = sources.get(source.rstrip(":"), 0) + 1
        print("differences in: " + ", ".join(f"{k} ({v})" for k, v in sources.items()), file=sys.stderr)
        print(f"report check FAILED for run {run_id!r}: {len(differences)} differences", file=sys.stderr)
        return 1
    print(f"report check passed for run {run_id!r}: {summary}")
    return 0


def _cmd_show(args: argparse.Namespace, run_id: str) -> int:
    folder = Path(args.runs_dir) / run_id
    report = folder / "report.md"
    if not report.exists():
        known = sorted(p.name for p in Path(args.runs_dir).glob("*") if p.is_dir())
        print(
            f"no report for run {run_id!r} in {args.runs_dir}/ (runs: {', '.join(known) or 'none'})",
            file=sys.stderr,
        )
        return 1
    print(report.read_text())
    print(f"\n(HTML: {folder / 'report.html'})")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    words = args.words
    if words[0] == "check":
        if len(words) != 2:
            raise SystemExit("usage: skingenbench report check RUN")
        return _cmd_check(args, words[1])
    if words[0] == "show":
        words = words[1:]
    if len(words) != 1:
        raise SystemExit("usage: skingenbench report [show] RUN | skingenbench report check RUN")
    return _cmd_show(args, words[0])


def register(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report",
        help="print a finished run's report; `report check RUN` recomputes its tables from the stored predictions",
    )
    report.add_argument("words", nargs="+", metavar="[show|check] RUN")
    report.add_argument("--runs-dir", default="runs", help="where `report RUN` finds the local report")
    report.add_argument(
        "--store",
        default="",
        help="the run's store (default: SKINGENBENCH_STORE, else $SKINGENBENCH_HOME/store)",
    )
    report.add_argument(
        "--tolerance",
        type=float,
        default=1e-9,
        help="relative tolerance for recomputed numbers (default 1e-9)",
    )
    report.set_defaults(func=_cmd_report)
