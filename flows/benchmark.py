"""The benchmark flow: the whole grid, from data to report, on any number of service endpoints.

data → split → preprocess per arm (A basic, B advanced) → train each generator on the arm's
training melanomas → sample the training mix and, separately, the evaluation set (``evaluation_count``
images, seeds 0 … N − 1, as the reference) (and measure DermGAN's controllability) → evaluate the
evaluation sets
(and class-anchor DermGAN's requested classes) → train and test every classifier ×
pipeline × seed → paired comparisons against each arm's real-only baseline → report.

Tasks call services over gRPC only; the flow reads nothing but small JSON results from the store.
Where the services and the store are is the run's ``Wiring``, an argument of the flow passed on to
every task (from the settings when a deployment runs the flow without one). A stage whose service
has nothing registered yet is skipped and the report says so.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner
from skingenbench.flows import tasks
from skingenbench.flows.endpoints import EndpointPool
from skingenbench.flows.grid import (
    EVALUATION_SEED,
    GENERATOR_NUMBERS,
    PREPROCESSING_LETTERS,
    REFERENCE_EVALUATION_COUNT,
    Grid,
    generator_pipeline,
    load_grid,
)
from skingenbench.flows.report import build_report, write_report
from skingenbench.flows.wiring import Wiring, open_pools
from skingenbench.services.platform.settings import SERVICES


def _read_json(store, uri: str) -> dict[str, Any]:
    return json.loads(store.get_bytes(store.key_from_uri(uri)))


def _synthetic_counts(grid: Grid, synthetic_count: int, train_label_count: int) -> dict[str, Any]:
    """How many synthetic images per generator go where: the report records both (they are separate on
    purpose: grid.py's module docstring)."""
    evaluation = grid.evaluation_count or synthetic_count
    first = EVALUATION_SEED if grid.evaluation_count else grid.split.seed
    return {
        "training_mix": synthetic_count,
        "training_mix_rule": "grid synthetic_count"
        if grid.synthetic_count
        else f"as many as the real training {grid.synthetic_label} images ({train_label_count})",
        "training_mix_seeds": [grid.split.seed, grid.split.seed + synthetic_count - 1],
        "evaluation": evaluation,
        "evaluation_first_seed": first,
        "evaluation_seeds": [first, first + evaluation - 1],
        "reference_evaluation": REFERENCE_EVALUATION_COUNT,
    }


def _phantom_options(grid: Grid) -> dict[str, Any]:
    return {"count": grid.data.count, "width": grid.data.width, "height": grid.data.height}


@flow(name="skingenbench-grid", task_runner=ThreadPoolTaskRunner(max_workers=8), log_prints=True)
def benchmark(
    grid_spec: str = "smoke", run_id: str = "", runs_dir: str = "runs", wiring: Wiring | None = None
) -> str:
    """Run a grid (a shipped name or a YAML path) on ``wiring``'s services and store (default: from the
    settings); returns the local report folder."""
    grid = load_grid(grid_spec)
    run_id = run_id or f"{grid.name}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    wiring = wiring or Wiring.from_settings()
    with open_pools(wiring) as pools:
        return _run_grid(grid, run_id, runs_dir, wiring, pools)


def _run_grid(grid: Grid, run_id: str, runs_dir: str, wiring: Wiring, pools: dict[str, EndpointPool]) -> str:
    log = get_run_logger()
    store = wiring.store()
    notes: list[str] = []
    services = {stage: tasks.service_info(wiring, stage) for stage in SERVICES}
    available = {stage: set(info["registry"]) for stage, info in services.items()}

    # -- data --------------------------------------------------------------------------------------
    sources = [(grid.data.source, grid.data.path)] + [
        (s["source"], s["path"]) for s in grid.data.extra_sources
    ]
    imported = [
        tasks.import_data(
            wiring, source, path, _phantom_options(grid) if source == "phantom" else {}, grid.data.seed
        )
        for source, path in sources
    ]
    fractions = (grid.split.train, grid.split.val, grid.split.test)
    split = tasks.split(wiring, [i["manifest"] for i in imported], fractions, grid.split.seed)
    curation = _read_json(store, split["outputs"]["report_json"])
    train_label_count = int(curation["counts"].get(grid.synthetic_label, {}).get("train", 0))
    synthetic_count = grid.synthetic_count or train_label_count
    counts = _synthetic_counts(grid, synthetic_count, train_label_count)
    log.info("split: %s; %d training %s images", curation["totals"], train_label_count, grid.synthetic_label)

    # -- preprocessing arms -------------------------------------------------------------------------
    def prep_config(prep: str) -> dict[str, Any]:
        return grid.preprocessing_config.get(prep, {})

    arms = {}
    for prep in grid.preprocessing:
        arms[prep] = {
            "all": tasks.preprocess.submit(
                wiring, split["manifest"], prep, grid.profile, prep_config(prep), grid.split.seed
            ),
            "train": tasks.preprocess.submit(
                wiring,
                split["manifest"],
                prep,
                grid.profile,
                prep_config(prep),
                grid.split.seed,
                0,
                ["train"],
            ),
            "augmented": tasks.preprocess.submit(
                wiring,
                split["manifest"],
                prep,
                grid.profile,
                prep_config(prep),
                grid.split.seed,
                grid.augment_copies,
                ["train"],
            ),
        }
    quality_reports = {}
    if grid.quality_report and grid.data.source == "phantom":
        quality_reports = {
            prep: tasks.quality.submit(wiring, imported[0]["manifest"], prep, grid.profile, prep_config(prep))
            for prep in grid.preprocessing
        }
    arms = {prep: {k: f.result() for k, f in futures.items()} for prep, futures in arms.items()}

    # -- generators ---------------------------------------------------------------------------------
    generators = [g for g in grid.generators if g in available["generation"]]
    for missing in sorted(set(grid.generators) - set(generators)):
        notes.append(
            f"generator `{missing}` is not registered on the generation service: pipelines "
            f"A{GENERATOR_NUMBERS[missing]}/B{GENERATOR_NUMBERS[missing]} were skipped"
        )
    trained, synthetic, evaluation_sets = {}, {}, {}
    for prep in grid.preprocessing:
        for generator in generators:
            name = generator_pipeline(prep, generator)
            trained[(prep, generator)] = tasks.train_generator.submit(
                wiring,
                arms[prep]["train"]["manifest"],
                generator,
                grid.profile,
                grid.generator_config.get(generator, {}),
                grid.synthetic_label,
                grid.split.seed,
                name,
            )
    for (prep, generator), future in trained.items():
        model = future.result()
        name = generator_pipeline(prep, generator)
        # The training mix: the same request as before the evaluation set was its own (same content address).
        synthetic[(prep, generator)] = tasks.sample.submit(
            wiring, model["outputs"]["model"], synthetic_count, grid.split.seed, name
        )
        # The evaluation set: image i with seed i (the generation service gives image i seed + i), as the
        # reference's seeds 0–4999; one job when it is the same request as the training mix.
        evaluation_sets[(prep, generator)] = (
            synthetic[(prep, generator)]
            if (counts["evaluation"], counts["evaluation_first_seed"]) == (synthetic_count, grid.split.seed)
            else tasks.sample.submit(
                wiring,
                model["outputs"]["model"],
                counts["evaluation"],
                counts["evaluation_first_seed"],
                f"{name} evaluation",
            )
        )
    synthetic = {key: future.result() for key, future in synthetic.items()}
    evaluation_sets = {key: future.result() for key, future in evaluation_sets.items()}
    controls = {}
    if "dermgan" in generators:  # does DermGAN draw what it is asked for? (size, centre, skin tone)
        for prep in grid.preprocessing:
            name = generator_pipeline(prep, "dermgan")
            controls[prep] = tasks.controllability.submit(
                wiring,
                trained[(prep, "dermgan")].result()["outputs"]["model"],
                grid.controllability,
                grid.split.seed,
                name,
            )
        controls = {prep: future.result() for prep, future in controls.items()}

    # -- classifiers ----------------------------------------------------------------------------------
    classifiers = [c for c in grid.classifiers if c in available["classification"]]
    for missing in sorted(set(grid.classifiers) - set(classifiers)):
        notes.append(f"classifier `{missing}` is not registered on the classification service; skipped")
    cells = {}
    for pipeline, prep, extra in grid.pipelines():
        if extra not in (None, "augment") and extra not in generators:
            continue
        regime = "real" if extra is None else "real+augment" if extra == "augment" else "real+synthetic"
        for classifier in classifiers:
            for seed in grid.seeds:
                run_name = f"{pipeline}/{classifier}/seed{seed}"
                cells[(pipeline, classifier, seed)] = tasks.train_classifier.submit(
                    wiring,
                    arms[prep]["all"]["manifest"],
                    classifier,
                    grid.profile,
                    grid.classifier_config.get(classifier, {}),
                    regime,
                    [synthetic[(prep, extra)]["manifest"]] if regime == "real+synthetic" else [],
                    arms[prep]["augmented"]["manifest"] if regime == "real+augment" else None,
                    synthetic_count,
                    grid.synthetic_label,
                    seed,
                    run_name,
                )
    tests = {}
    for (pipeline, classifier, seed), future in cells.items():
        trained_cell = future.result()
        prep = next(p for p, letter in PREPROCESSING_LETTERS.items() if pipeline.startswith(letter))
        tests[(pipeline, classifier, seed)] = tasks.test_classifier.submit(
            wiring,
            trained_cell["checkpoint"],
            arms[prep]["all"]["manifest"],
            grid.bootstrap_samples,
            seed,
            f"{pipeline}/{classifier}/seed{seed}",
        )
    tests = {key: future.result() for key, future in tests.items()}
    comparisons = {}
    for (pipeline, classifier, seed), result in tests.items():
        baseline = (pipeline[0] + "1", classifier, seed)
        if pipeline.endswith("1") or baseline not in tests:
            continue
        comparisons[(pipeline, classifier, seed)] = tasks.compare.submit(
            wiring,
            tests[baseline]["outputs"]["result_json"],
            result["outputs"]["result_json"],
            grid.bootstrap_samples,
            seed,
            f"{pipeline} vs {baseline[0]} {classifier} seed{seed}",
        )
    comparisons = {key: future.result() for key, future in comparisons.items()}
    gradcams = {}
    for prep in grid.preprocessing:
        key = (PREPROCESSING_LETTERS[prep] + "1", classifiers[0], grid.seeds[0]) if classifiers else None
        if key in cells:
            gradcams[key[0]] = tasks.gradcam.submit(
                wiring,
                cells[key].result()["checkpoint"],
                arms[prep]["all"]["manifest"],
                4,
                "/".join(map(str, key)),
            )
    gradcams = {k: f.result() for k, f in gradcams.items()}

    # -- evaluation of the synthetic sets ------------------------------------------------------------
    evaluations, anchorings = {}, {}
    if "evaluation" in SERVICES and available["evaluation"] and synthetic:
        for prep in grid.preprocessing:
            sets = {generator_pipeline(prep, g): evaluation_sets[(prep, g)]["manifest"] for g in generators}
            baseline = (
                (PREPROCESSING_LETTERS[prep] + "1", classifiers[0], grid.seeds[0]) if classifiers else None
            )
            checkpoint = cells[baseline].result()["checkpoint"] if baseline in cells else ""
            evaluations[prep] = tasks.evaluate.submit(
                wiring,
                arms[prep]["train"]["manifest"],
                sets,
                grid.synthetic_label,
                grid.evaluation,
                checkpoint,
                grid.split.seed,
                prep,
            )
            if (
                checkpoint and prep in controls
            ):  # the arm's real-only classifier on DermGAN's requested classes
                anchorings[prep] = tasks.class_anchoring.submit(
                    wiring,
                    arms[prep]["train"]["manifest"],
                    controls[prep]["manifest"],
                    str(grid.evaluation.get("profile", grid.profile)),
                    checkpoint,
                    grid.split.seed,
                    f"{generator_pipeline(prep, 'dermgan')}-controllability",
                )
        evaluations = {k: f.result() for k, f in evaluations.items()}
        anchorings = {k: f.result() for k, f in anchorings.items()}
    elif synthetic:
        notes.append("the evaluation service has nothing registered: generative metrics were skipped")

    # -- report -------------------------------------------------------------------------------------
    collected = {
        "run_id": run_id,
        "grid": grid.to_dict(),
        "notes": notes,
        "imported": imported,
        "split": split,
        "curation": curation,
        "arms": arms,
        "quality": {p: f.result() for p, f in quality_reports.items()},
        "generators": {f"{p}/{g}": r for (p, g), r in synthetic.items()},
        "evaluation_sets": {f"{p}/{g}": r for (p, g), r in evaluation_sets.items()},
        "synthetic_counts": counts,
        "generator_models": {f"{p}/{g}": f.result() for (p, g), f in trained.items()},
        "tests": {"/".join(map(str, k)): v for k, v in tests.items()},
        "comparisons": {"/".join(map(str, k)): v for k, v in comparisons.items()},
        "gradcams": gradcams,
        "evaluations": evaluations,
        "controllability": {
            prep: {**control, "anchoring": anchorings.get(prep)} for prep, control in controls.items()
        },
        "endpoints": {stage: [e.target for e in pool.endpoints] for stage, pool in pools.items()},
        "services": services,
    }
    report = build_report(store, collected)
    folder = write_report(store, Path(runs_dir) / run_id, run_id, report)
    create_markdown_artifact(
        markdown=report.markdown[:200_000],
        key=f"report-{grid.name}",
        description=f"SkinGenBench report {run_id}",
    )
    for table_name, rows in report.tables.items():
        if rows:
            create_table_artifact(
                table=rows,
                key=f"{table_name}-{grid.name}".replace("_", "-"),
                description=table_name.replace("_", " "),
            )
    log.info("report: %s", folder / "report.md")
    return str(folder)
