"""The flow's parameters that need no services: selected pipelines, where the report goes (a local
folder and the store, the store only, another store URI; a pod), run names, tags, artifact keys."""

from __future__ import annotations

import pytest
from skingenbench.flows.benchmark import (
    _run_name,
    benchmark,
    in_container,
    report_destination,
    select_pipelines,
    task_tags,
)
from skingenbench.flows.grid import GridError, load_grid
from skingenbench.flows.progress import artifact_key
from skingenbench.services.platform.store import LocalFolderStore


def test_pipelines_select_rows_and_a_wrong_name_says_which_exist():
    grid = load_grid("smoke")
    everything = select_pipelines(grid, None)
    assert [row[0] for row in everything] == [row[0] for row in grid.pipelines()]
    chosen = select_pipelines(grid, ["A1", "B2"])
    assert [row[0] for row in chosen] == ["A1", "B2"] and chosen[1][1] == "advanced"
    with pytest.raises(GridError, match=r"'C9' not in grid 'smoke' \(its pipelines: A1, "):
        select_pipelines(grid, ["A1", "C9"])
    with pytest.raises(GridError, match="none selected"):
        select_pipelines(grid, [])
    # A Prefect parameter (what a deployment's Run form shows), validated as a list of names.
    assert benchmark.validate_parameters({"pipelines": ["A1", "B2"]})["pipelines"] == ["A1", "B2"]
    assert benchmark.validate_parameters({}).get("pipelines") is None


def test_the_report_goes_to_a_folder_and_the_store_or_to_the_store_only(tmp_path, monkeypatch):
    monkeypatch.delenv("SKINGENBENCH_IN_CONTAINER", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    store = LocalFolderStore(tmp_path / "store")
    folder, target, prefix, location = report_destination(str(tmp_path / "runs"), "r1", store)
    assert folder == tmp_path / "runs" / "r1" and target is store and prefix == "runs"
    assert location == str(folder)
    folder, target, prefix, location = report_destination("store", "r1", store)
    assert folder is None and target is store and location == store.uri("runs/r1")
    other = f"file://{tmp_path}/reports"
    folder, target, prefix, location = report_destination(other, "r1", store)
    assert folder is None and prefix == "" and location == f"{other}/r1"
    assert target.root == tmp_path / "reports"
    # In a pod the default relative folder would be lost with the container: the store only.
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert in_container() and report_destination("runs", "r1", store)[0] is None
    monkeypatch.setenv("SKINGENBENCH_IN_CONTAINER", "0")  # said explicitly: a workstation after all
    assert not in_container() and report_destination("runs", "r1", store)[0] is not None


def test_names_tags_and_keys():
    assert _run_name("smoke", "smoke-20260101-101010") == "smoke-20260101-101010"
    assert _run_name("paper", "seed-sweep") == "paper-seed-sweep"
    assert artifact_key("report", "Smoke_2026-01-01") == "report-smoke-2026-01-01"
    assert not task_tags({}) and task_tags({"SKINGENBENCH_TASK_TAGS": "1"})
