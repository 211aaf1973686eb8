"""The dose–response axis in the flow (issue 18 item 1): the requests the real ``GridRun`` graph builds.

The flow's own code plans and wires every cell; only the service calls are replaced by a recorder
that returns each cell's result at once (so the whole dependency graph runs in milliseconds). Job
identity is the request (the services' content addressing), so equal serialized requests are the
same job: the ratio-0 cell is pipeline 1's job, and adding the axis leaves every earlier request as it
was (a re-run reuses every job it had).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from skingenbench.flows import benchmark, tasks
from skingenbench.flows.grid import GridError, parse_grid, ratio_count, ratio_pipeline
from skingenbench.services.platform.store import store_from_uri

BASE = {
    "name": "dose-test",
    "preprocessing": ["basic"],
    "generators": ["stylegan2_ada"],
    "classifiers": ["resnet18"],
    "seeds": [0, 1],
    "evaluation_count": 16,
    "quality_report": False,
}
TRAIN_MELANOMAS = 7  # the split's training melanomas: the synthetic_count rule's N


def _fake_result(task: Any, args: tuple) -> dict[str, Any]:
    name = task.name
    if name == "train classifier":
        return {"checkpoint": {"uri": f"ckpt:{args[-1]}", "sha256": "c"}, "outputs": {}, "result": {}}
    if name == "test classifier":
        return {"outputs": {"result_json": f"test:{args[1]['uri']}"}, "result": {}}
    if name == "train generator":
        return {"outputs": {"model": f"model:{args[1]}"}, "result": {}}
    if name == "quality gate":  # two rejected, five passed (of any mix)
        return {
            "rejected_ids": ["img_0", "img_3"],
            "gate": {"accepted_count": 5},
            "outputs": {},
            "result": {},
        }
    if name in ("sample", "preprocess"):
        return {"manifest": {"uri": f"{name}:{args[1:]}", "sha256": "s", "item_count": 3}, "result": {}}
    return {"outputs": {}, "result": {}}


def _run_graph(
    grid_data: dict[str, Any],
    tmp_path,
    monkeypatch,
    evaluation: frozenset = frozenset(),
    runs: list | None = None,
) -> list[tuple[str, Any, tuple]]:
    """(cell name, task, args) of every cell the flow submits for ``grid_data``."""
    monkeypatch.setattr(benchmark, "get_run_logger", lambda: __import__("logging").getLogger("test"))
    monkeypatch.setattr(benchmark, "PrefectProgressArtifacts", lambda progress: None)  # no Prefect view
    store = store_from_uri(str(tmp_path / "store"))
    store.put_bytes(
        "split/report.json",
        json.dumps({"counts": {"MEL": {"train": TRAIN_MELANOMAS}}, "totals": {}}).encode(),
    )
    grid = parse_grid(grid_data)

    class Wiring:
        def store(self):
            return store

    run = benchmark.GridRun(grid, "r", str(tmp_path), Wiring(), {}, grid.pipelines())
    calls: list[tuple[str, Any, tuple]] = []

    def cell(key, pool, stage, name, task, *args, tags=()):
        calls.append((name, task, args))
        run._done(key, _fake_result(task, args))

    run.cell = cell
    run._choose(
        {"generation": {"stylegan2_ada"}, "classification": {"resnet18"}, "evaluation": set(evaluation)}
    )
    run._plan()
    run.results[("split",)] = {
        "manifest": {"uri": "split"},
        "outputs": {"report_json": store.uri("split/report.json")},
    }
    run._after_split()
    assert not run._waiting, run._waiting
    if runs is not None:
        runs.append(run)
    return calls


def _train_requests(calls) -> dict[str, bytes]:
    return {
        name: tasks.train_classifier_request(*args).SerializeToString(deterministic=True)
        for name, task, args in calls
        if task.name == "train classifier"
    }


def test_ratio_zero_is_pipeline_one_and_the_default_ratio_changes_no_request(tmp_path, monkeypatch):
    before = _run_graph(BASE, tmp_path / "a", monkeypatch)
    after = _run_graph({**BASE, "synthetic_ratio": [0, 0.5, 1, 2]}, tmp_path / "b", monkeypatch)
    trained_before, trained_after = _train_requests(before), _train_requests(after)
    for seed in (0, 1):
        # Ratio 0: byte for byte pipeline 1's request (same run name, count, no synthetic manifest).
        assert (
            trained_after[f"train A2@r0/resnet18/seed{seed}"]
            == trained_after[f"train A1/resnet18/seed{seed}"]
        )
        request = tasks.train_classifier_request(
            *next(a for n, _, a in after if n == f"train A2@r0.5/resnet18/seed{seed}")
        )
        assert (request.regime, request.synthetic_count) == ("real+synthetic", 4)  # round(0.5 × 7)
        assert request.run_name == f"A2@r0.5/resnet18/seed{seed}"
        request = tasks.train_classifier_request(
            *next(a for n, _, a in after if n == f"train A2@r2/resnet18/seed{seed}")
        )
        assert request.synthetic_count == 14 and request.synthetic[0].uri.startswith("sample:")
    # Every request of the grid without the axis is in the grid with it, unchanged: every job is reused.
    assert set(trained_before.items()) <= set(trained_after.items())
    others_before = {(n, repr(a)) for n, t, a in before if t.name != "train classifier"}
    others_after = {(n, repr(a)) for n, t, a in after if t.name != "train classifier"}
    assert others_before <= others_after
    # The new work: 3 ratios × 2 seeds trained and tested, one larger mix (14 images), 4 comparisons.
    new = [n for n, _, _ in after if n not in {m for m, _, _ in before}]
    assert sorted(n for n in new if n.startswith("train ")) == sorted(
        f"train A2@r{r}/resnet18/seed{s}" for r in ("0", "0.5", "2") for s in (0, 1)
    )
    samples = [a for _, t, a in after if t.name == "sample"]
    assert sorted(a[1] for a in samples) == [7, 14, 16]  # the mix, the ratio-2 mix, the evaluation set
    assert sorted(n for n in new if n.startswith("compare ")) == sorted(
        f"compare A2@r{r} vs A1/resnet18/seed{s}" for r in ("0.5", "2") for s in (0, 1)
    )


def test_ratio_names_counts_and_grid_validation():
    assert ratio_pipeline("A2", 1.0) == "A2" and ratio_pipeline("B3", 0.25) == "B3@r0.25"
    assert [ratio_count(r, 7) for r in (0, 0.5, 1, 2)] == [0, 4, 7, 14]
    assert parse_grid(BASE).synthetic_ratio == [1.0]
    for bad, message in (
        ([], "at least one"),
        ([0.5, 0.5], "each ratio once"),
        ([-1], "must be >= 0"),
        (["1"], "a number"),
        (0.5, "expected a list"),
    ):
        with pytest.raises(GridError, match=message):
            parse_grid({**BASE, "synthetic_ratio": bad})
    with pytest.raises(GridError, match="quality_gate.threshold: unknown field"):
        parse_grid({**BASE, "quality_gate": {"threshold": 1}})
    assert parse_grid({**BASE, "quality_gate": {"margin": 0.1}}).quality_gate == {"margin": 0.1}
    with pytest.raises(GridError, match="every check off"):
        parse_grid(
            {
                **BASE,
                "quality_gate": {
                    "enabled": True,
                    "memorization": False,
                    "lesion_area_fraction": False,
                    "ita_degrees": False,
                },
            }
        )


def test_the_quality_gate_checks_every_mix_and_its_rejections_stay_out_of_training(tmp_path, monkeypatch):
    ungated = _run_graph({**BASE, "synthetic_ratio": [0, 0.5, 1, 2]}, tmp_path / "a", monkeypatch)
    gated = _run_graph(
        {**BASE, "synthetic_ratio": [0, 0.5, 1, 2], "quality_gate": {"enabled": True}},
        tmp_path / "b",
        monkeypatch,
        frozenset({"inception-v3-compat"}),
        runs := [],
    )
    assert not [n for n, t, _ in ungated if t.name == "quality gate"]
    mixes = {a[1]: a for _, t, a in gated if t.name == "sample" and a[1] != 16}  # the mix and the x14 mix
    gates = [(n, a) for n, t, a in gated if t.name == "quality gate"]
    assert sorted(n for n, _ in gates) == [
        "quality gate A2-stylegan2_ada",
        "quality gate A2-stylegan2_ada x14",
    ]
    measured = [a for n, _, a in gated if n.startswith("gate measure ")]
    assert len(measured) == 2 and all(a[1] == "basic" for a in measured)  # the arm's own pipeline measures
    for _name, args in gates:  # against the arm's training images; the mix; the mix as measured
        real, synthetic, measure = args[0], args[1], args[2]
        assert real["uri"].startswith("preprocess:") and "['train']" in real["uri"]
        assert synthetic["uri"].startswith("sample:") and measure["uri"].startswith("preprocess:")
        assert args[5] == {"enabled": True}
    assert {m["uri"] for _, a in gates for m in [a[1]]} == {f"sample:{mixes[n][1:]}" for n in (7, 14)}
    trained = {n: tasks.train_classifier_request(*a) for n, t, a in gated if t.name == "train classifier"}
    for seed in (0, 1):
        # The rejections stay out of every synthetic cell; a cell asking for more than passed gets what did.
        for pipeline, count in (("A2", 5), ("A2@r0.5", 4), ("A2@r2", 5)):
            request = trained[f"train {pipeline}/resnet18/seed{seed}"]
            assert list(request.exclude_synthetic) == ["img_0", "img_3"], pipeline
            assert request.synthetic_count == count, pipeline
        # Real-only cells are the jobs they were without the gate.
        before = _train_requests(ungated)
        for pipeline in ("A1", "A2@r0"):
            name = f"train {pipeline}/resnet18/seed{seed}"
            assert trained[name].SerializeToString(deterministic=True) == before[name]
            assert not trained[name].exclude_synthetic
    # The dose–response rows carry what each gated cell trained on, not what it asked for.
    counts = {(row["pipeline"], row["seed"]): row["synthetic_count"] for row in runs[0]._dose_response()}
    assert counts[("A2@r2", 0)] == 5 and counts[("A2@r0.5", 1)] == 4 and counts[("A2@r0", 0)] == 0
