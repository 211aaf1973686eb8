"""The benchmark flow end to end: a reduced grid through real services (in this process, on free
ports, one folder store) and a real Prefect run; then the same grid again recomputes nothing. The flow
gets its services and store as a ``Wiring`` argument, or (a deployment) from the settings."""

from __future__ import annotations

import json

import pytest
import yaml
from skingenbench.services.platform.settings import SERVICES

from tests.common.service_helpers import running

pytestmark = pytest.mark.slow

GRID = {
    "name": "reduced",
    "profile": "tiny",
    "data": {"source": "phantom", "count": 90, "width": 80, "height": 64, "seed": 4},
    "split": {"train": 0.7, "val": 0.15, "test": 0.15, "seed": 1},
    "preprocessing": ["basic", "advanced"],
    "generators": ["ddpm", "dermgan"],
    "generator_config": {
        "ddpm": {"train_steps": 6, "checkpoint_every_steps": 3},
        "dermgan": {"train_steps": 6, "train_epochs": 0, "checkpoint_every_steps": 3},
    },
    "controllability": {"lesion_area_fractions": [0.1, 0.2], "ita_degrees": [0.0, 40.0], "repeats": 1},
    "classifiers": ["resnet18"],
    "classifier_config": {"resnet18": {"epochs": 1}},
    "seeds": [0],
    "bootstrap_samples": 100,
    "evaluation": {"profile": "tiny"},
    "evaluation_count": 16,  # FID/KID/IS on seeds 0-15, separate from the training mix
    # Every training mix measured and checked before training (flows/quality_gate.py).
    "quality_gate": {"enabled": True},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    import contextlib

    from skingenbench.services.platform.store import LocalFolderStore

    store = LocalFolderStore(tmp_path_factory.mktemp("flow") / "store")
    with contextlib.ExitStack() as stack:
        services = {stage: stack.enter_context(running(stage, store)) for stage in SERVICES}
        yield store, services


def _jobs(services) -> dict[str, list]:
    return {stage: service.runner.list(limit=10_000) for stage, service in services.items()}


def _wiring(store, services):
    from skingenbench.flows.wiring import Wiring

    return Wiring({stage: (service.target,) for stage, service in services.items()}, store.root_uri)


def test_reduced_grid_runs_end_to_end_and_a_rerun_recomputes_nothing(stack, tmp_path, monkeypatch):
    from prefect.testing.utilities import prefect_test_harness
    from skingenbench.flows.benchmark import benchmark

    store, services = stack
    for stage in SERVICES:  # the wiring is the only route: settings naming other services are not read
        monkeypatch.setenv(f"SKINGENBENCH_{stage.upper()}_ENDPOINTS", "127.0.0.1:9")
    monkeypatch.setenv("SKINGENBENCH_STORE", str(tmp_path / "not-the-store"))
    wiring = _wiring(store, services)
    grid_file = tmp_path / "reduced.yaml"
    grid_file.write_text(yaml.safe_dump(GRID))

    with prefect_test_harness(server_startup_timeout=120):
        folder = benchmark(
            grid_spec=str(grid_file), run_id="first", runs_dir=str(tmp_path / "runs"), wiring=wiring
        )
        first = _jobs(services)
        report = (tmp_path / "runs" / "first" / "report.md").read_text()
        # Every pipeline of both preprocessing arms that the grid asks for has a classifier row.
        for pipeline in ("A1", "A3", "A4", "A5", "B1", "B3", "B4", "B5"):
            assert f"| {pipeline} | resnet18 0 |" in report, pipeline
        assert "## Data and splits" in report and "| MEL |" in report
        assert '"device": "cpu"' in report and '"code_version"' in report  # provenance: where it ran
        assert "Artifact removal on phantom ground truth: `advanced`" in report
        assert "Generative metrics: `basic`" in report and "A3-ddpm" in report
        assert "**16 for FID/KID/IS** (seeds 0–15" in report and "sample-size minimums" in report
        tables = json.loads((tmp_path / "runs" / "first" / "tables.json").read_text())
        assert len(tables["global_metrics"]) == 8 and len(tables["paired_tests"]) == 6 * 4  # 4 tests each
        # DermGAN: requested vs measured per attribute for each arm, and class anchoring of what was asked.
        assert (
            "## DermGAN controllability" in report and "### `advanced`: Controllability of dermgan" in report
        )
        assert "Classified as the requested class by the arm's real-only classifier: MEL" in report
        controllability = tables["controllability"]
        assert {(row["arm"], row["attribute"]) for row in controllability} == {
            (arm, attribute)
            for arm in ("basic", "advanced")
            for attribute in ("lesion_area_fraction", "center_x", "center_y", "ita_degrees")
        }
        assert all(row["measured"] + row["failures"] == 2 * 2 * 2 for row in controllability)
        html = (tmp_path / "runs" / "first" / "report.html").read_text()
        assert html.count("data:image/png;base64") >= 2 + 2 + 6  # evaluation plots, ROC per arm, confusions
        assert "ROC curves of" in html and "on the arm-A test split" in html
        assert "Confusion matrices of" in html and "B4" in html
        assert "DermGAN, basic arm: images drawn for a requested skin tone" in html
        # Every figure is also a 300-dpi PNG and a PDF beside the report, linked from the Markdown.
        figures = tmp_path / "runs" / "first" / "figures"
        rocs = sorted(p.name for p in figures.glob("roc-a-*"))  # file stems are lower case
        assert any(n.endswith(".png") for n in rocs) and any(n.endswith(".pdf") for n in rocs)
        assert "figures/roc-a-" in report
        _check_quality_gate(tmp_path / "runs" / "first", report, first["classification"])
        assert store.exists("runs/first/report.md") and not (tmp_path / "not-the-store").exists()
        assert folder.endswith("first")
        _check_prefect_view("first")

        benchmark(grid_spec=str(grid_file), run_id="second", runs_dir=str(tmp_path / "runs"), wiring=wiring)
        second = _jobs(services)
    # Same grid again: no service ran a new job, and none ran a job twice.
    for stage in SERVICES:
        assert sorted(r.job_id for r in second[stage]) == sorted(r.job_id for r in first[stage]), stage
        assert all(r.attempts == 1 and r.state == "SUCCEEDED" for r in second[stage]), stage


def _check_quality_gate(folder, report: str, training_jobs) -> None:
    """Each mix was gated (one row per synthetic set in the report), and every cell that trained on a mix
    sent exactly that mix's rejections as exclude_synthetic, with the count the gate left it."""
    run = json.loads((folder / "run.json").read_text())
    gates = run["quality_gate"]
    assert sorted(gates) == ["A3-ddpm", "A5-dermgan", "B3-ddpm", "B5-dermgan"]
    assert "## Synthetic-set quality gate" in report
    for name, gate in gates.items():
        assert f"| {name} | {gate['checked']} | {gate['rejected_count']} |" in report
        assert gate["checked"] == gate["requested"] == gate["accepted_count"] + gate["rejected_count"] > 0
    # Six training steps draw nothing like a lesion on skin: the gate has something to reject.
    assert any(gate["rejected_count"] for gate in gates.values()), gates
    requests = {
        record.request["run_name"]: record.request
        for record in training_jobs
        if record.kind == "train_classifier" and record.request.get("regime") == "real+synthetic"
    }
    for pipeline, name in (("A3", "A3-ddpm"), ("A5", "A5-dermgan"), ("B3", "B3-ddpm"), ("B5", "B5-dermgan")):
        request, gate = requests[f"{pipeline}/resnet18/seed0"], gates[name]
        assert sorted(request.get("exclude_synthetic", [])) == sorted(gate["rejected"]), pipeline
        assert int(request.get("synthetic_count", 0)) == min(gate["requested"], gate["accepted_count"])


def _check_prefect_view(run_id: str) -> None:
    """What the Prefect UI shows of the run: a named flow run, task runs named after their cells, one
    grid progress artifact at 100% and one results table, keyed by the run id."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs()
        assert any(run.name == f"reduced-{run_id}" and "grid:reduced" in run.tags for run in flow_runs)
        names: set[str] = set()
        while page := client.read_task_runs(limit=200, offset=len(names)):  # the API's page limit
            names |= {run.name for run in page}
            if len(page) < 200:
                break
        for cell in ("preprocess B/train", "preprocess B/all", "preprocess A/augmented", "split by lesion"):
            assert cell in names, cell
        assert {
            "train A1/resnet18/seed0",
            "test B5/resnet18/seed0",
            "sample A3/mix",
            "sample A3/eval",
        } <= names
        assert "compare B3 vs B1/resnet18/seed0" in names and "evaluate A" in names
        keys = [f"progress-{run_id}", f"results-{run_id}", f"report-{run_id}"]
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
        by_key = {a.key: a for a in artifacts}
        assert set(by_key) == set(keys), sorted(by_key)
        assert by_key[f"progress-{run_id}"].data == 100.0
        assert "finished" in by_key[f"progress-{run_id}"].description
        rows = json.loads(by_key[f"results-{run_id}"].data)
        assert any(row["cell"] == "test A1/resnet18/seed0" and row["outcome"] == "done" for row in rows)
        assert len(rows) == len({row["cell"] for row in rows}) > 30


_FLOW_PROCESS = """
import sys
from prefect.testing.utilities import prefect_test_harness
from skingenbench.flows.benchmark import benchmark
with prefect_test_harness(server_startup_timeout=120):
    benchmark(grid_spec=sys.argv[1], run_id="killed", runs_dir=sys.argv[2])
"""


def test_a_grid_killed_mid_run_resumes_without_recomputing_finished_cells(tmp_path):
    """Kill the flow process once some cells are done; the re-run reuses every finished job. The killed
    run is wired from its settings (as a deployment is), the resumed one by its argument."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    from prefect.testing.utilities import prefect_test_harness
    from skingenbench.flows.benchmark import benchmark
    from skingenbench.services.platform.store import LocalFolderStore

    store = LocalFolderStore(tmp_path / "store")
    grid = dict(GRID, classifiers=["resnet18"], generators=["ddpm"], name="killed")
    grid["generator_config"] = {"ddpm": GRID["generator_config"]["ddpm"]}
    grid_file = tmp_path / "killed.yaml"
    grid_file.write_text(yaml.safe_dump(grid))
    with contextlib.ExitStack() as stack:
        services = {stage: stack.enter_context(running(stage, store)) for stage in SERVICES}
        env = dict(os.environ, SKINGENBENCH_STORE=store.root_uri)
        for stage, service in services.items():
            env[f"SKINGENBENCH_{stage.upper()}_ENDPOINTS"] = service.target
        flow = subprocess.Popen(
            [sys.executable, "-c", _FLOW_PROCESS, str(grid_file), str(tmp_path / "runs")],
            env=env,
            cwd=os.getcwd(),
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # kill once the generator has started training
            if any(r.kind == "train_generator" for r in services["generation"].runner.list()):
                break
            assert flow.poll() is None, "the flow ended before it could be killed"
            time.sleep(0.5)
        os.killpg(flow.pid, signal.SIGKILL)
        flow.wait()
        before = {stage: {r.job_id: r.state for r in s.runner.list()} for stage, s in services.items()}
        finished_before = {
            (stage, j) for stage, jobs in before.items() for j, st in jobs.items() if st == "SUCCEEDED"
        }
        assert finished_before and not (tmp_path / "runs" / "killed").exists()

        with prefect_test_harness(server_startup_timeout=120):
            benchmark(
                grid_spec=str(grid_file),
                run_id="resumed",
                runs_dir=str(tmp_path / "runs"),
                wiring=_wiring(store, services),
            )
        after = {stage: {r.job_id: r for r in s.runner.list()} for stage, s in services.items()}
    assert (tmp_path / "runs" / "resumed" / "report.md").exists()
    for stage, job_id in finished_before:
        assert after[stage][job_id].attempts == 1  # finished before the kill: not run again
    assert all(r.attempts == 1 and r.state == "SUCCEEDED" for jobs in after.values() for r in jobs.values())
    assert sum(len(j) for j in after.values()) > len(finished_before)  # the rest of the grid did run
