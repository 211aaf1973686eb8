"""``skingenbench report check RUN``: recomputes a finished run's tables from the stored per-image
predictions and fails, naming what differs, when anything stored was changed."""

from __future__ import annotations

import json
import shutil

import pytest

from skingenbench.cli import main
from tests.flows.test_report_statistics import build_run_store


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("check") / "store"
    build_run_store(root, run_id="small")
    return root


@pytest.fixture
def run_store(pristine, tmp_path):
    """A copy of the finished run per test, at the same path (the documents hold absolute URIs)."""
    shutil.rmtree(pristine.parent / "work", ignore_errors=True)
    shutil.copytree(pristine, pristine.parent / "work")
    yield pristine
    shutil.rmtree(pristine, ignore_errors=True)
    shutil.move(str(pristine.parent / "work"), str(pristine))


def _check(root, capsys, run_id: str = "small") -> tuple[int, str]:
    code = main(["report", "check", run_id, "--store", root.as_uri()])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_finished_run_passes(run_store, capsys):
    code, out = _check(run_store, capsys)
    assert code == 0, out
    assert "report check passed" in out and "4 test results and 2 comparisons" in out


def test_one_altered_prediction_fails_and_is_named(run_store, capsys):
    csv = run_store / "classifier-test" / "A2-1" / "predictions.csv"
    lines = csv.read_text().splitlines()
    cells = lines[3].split(",")
    cells[1], cells[4] = cells[4], cells[1]  # swap two probabilities: the row still sums to 1
    lines[3] = ",".join(cells)
    csv.write_text("\n".join(lines) + "\n")
    code, out = _check(run_store, capsys)
    assert code == 1
    assert "test A2/resnet18/1 result.json predictions (vs predictions.csv)[2].probs[0]" in out
    assert "report check FAILED" in out and "tables.json" in out  # the tables no longer reproduce


def test_an_altered_table_cell_fails_and_is_named(run_store, capsys):
    path = run_store / "runs" / "small" / "tables.json"
    tables = json.loads(path.read_text())
    row = next(r for r in tables["paired_tests"] if r["test"] == "melanoma F1 (paired bootstrap)")
    row["p (Holm)"] = "0.0001"
    path.write_text(json.dumps(tables))
    code, out = _check(run_store, capsys)
    assert code == 1
    assert "tables.json paired_tests [A2 vs A1 resnet18 0 melanoma F1 (paired bootstrap)] p (Holm)" in out


def test_an_altered_comparison_fails_and_is_named(run_store, capsys):
    path = run_store / "classifier-compare" / "0" / "comparison.json"
    document = json.loads(path.read_text())
    document["paired_bootstrap"]["balanced_accuracy"]["p_value"] = 0.001
    path.write_text(json.dumps(document))
    code, out = _check(run_store, capsys)
    assert code == 1
    assert "comparison A2/resnet18/0 comparison.json paired_bootstrap.balanced_accuracy.p_value" in out


def test_a_changed_test_manifest_label_fails(run_store, capsys):
    path = run_store / "data" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["items"][0]["label"] = "MEL" if manifest["items"][0]["label"] != "MEL" else "NV"
    path.write_text(json.dumps(manifest))
    code, out = _check(run_store, capsys)
    assert code == 1 and "data manifest: sha256 stored" in out


def test_a_run_without_a_record_fails_with_a_message(run_store, capsys):
    code, out = _check(run_store, capsys, run_id="missing")
    assert code == 1 and "no run record (run.json)" in out and "small" in out


def test_report_still_prints_a_local_report(pristine, capsys):
    runs = pristine.parent / "runs"
    assert main(["report", "small", "--runs-dir", str(runs)]) == 0
    assert "SkinGenBench report" in capsys.readouterr().out
    assert main(["report", "show", "nothing", "--runs-dir", str(runs)]) == 1
