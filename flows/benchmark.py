"""The benchmark flow: the whole grid, from data to report, on any number of service endpoints.

data → split → preprocess per arm (A basic, B advanced) → train each generator on the arm's
training melanomas → sample the training mix and, separately, the evaluation set (``evaluation_count``
images, seeds 0 … N − 1, as the reference) (and measure DermGAN's controllability) → evaluate the
evaluation sets
(and class-anchor DermGAN's requested classes) → train and test every classifier ×
pipeline × seed → paired comparisons against each arm's real-only baseline → report.

Each cell is submitted the moment its inputs exist (``scheduling.py``): a real-only or augmentation
classifier cell does not wait for any generator, a classifier's test starts when its training ends, a
comparison when its two tests end, an arm's evaluation when its evaluation sets and its baseline
classifier are done; per stage as many cells run as its endpoints have slots. Each task run is named
after its cell (``train A2/resnet50/seed0``) and tagged with its stage, pipeline and arm; the run's
progress (``progress.py``) is one Prefect progress artifact and one results table keyed by the run id.

Tasks call services over gRPC only; the flow reads nothing but small JSON results from the store.
Where the services and the store are is the run's ``Wiring``, an argument of the flow passed on to
every task (from the settings when a deployment runs the flow without one). A stage whose service
has nothing registered yet is skipped and the report says so.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner
from skingenbench.flows import tasks
from skingenbench.flows.endpoints import EndpointPool
from skingenbench.flows.grid import (
    DEFAULT_SYNTHETIC_RATIO,
    EVALUATION_SEED,
    GENERATOR_NUMBERS,
    PREPROCESSING_LETTERS,
    REFERENCE_EVALUATION_COUNT,
    Grid,
    GridError,
    generator_pipeline,
    load_grid,
    phantom_import_options,
    ratio_count,
    ratio_pipeline,
)
from skingenbench.flows.progress import GridProgress, PrefectProgressArtifacts, artifact_key
from skingenbench.flows.quality_gate import trained_count
from skingenbench.flows.report import build_report, write_report
from skingenbench.flows.sampling_options import sampling_conditioning, training_config
from skingenbench.flows.scheduling import CellScheduler
from skingenbench.flows.wiring import Wiring, open_pools
from skingenbench.services.platform.settings import SERVICES
from skingenbench.services.platform.store import ObjectStore, store_from_uri

# The task runner's threads are made on demand and the scheduler keeps at most one cell in flight per
# endpoint slot, so a run uses as many threads as its endpoints have slots; this only caps a huge pool.
MAX_TASK_THREADS = 512
STORE_RUNS_DIR = "store"  # runs_dir meaning "the run's own store only, under runs/<run-id>/"


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


def _flow_run_name() -> str:
    """``<grid>-<run id>`` (the run id when it already starts with the grid's name); a run without a
    run id is renamed once the flow has made one (``_name_flow_run``)."""
    from prefect.runtime import flow_run

    parameters = flow_run.parameters or {}
    grid = Path(str(parameters.get("grid_spec") or "smoke")).stem
    run_id = str(parameters.get("run_id") or "")
    return _run_name(grid, run_id) if run_id else f"{grid}-starting"


def _run_name(grid: str, run_id: str) -> str:
    return run_id if run_id.startswith(grid) else f"{grid}-{run_id}"


def _name_flow_run(name: str, tags: list[str]) -> None:
    try:
        from prefect.client.orchestration import get_client
        from prefect.context import FlowRunContext

        context = FlowRunContext.get()
        if context is None or context.flow_run is None:
            return
        with get_client(sync_client=True) as client:
            client.update_flow_run(
                context.flow_run.id, name=name, tags=sorted({*context.flow_run.tags, *tags})
            )
    except Exception:
        get_run_logger().debug("could not rename the flow run", exc_info=True)


@flow(
    name="skingenbench-grid",
    flow_run_name=_flow_run_name,
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_TASK_THREADS),
    log_prints=True,
)
def benchmark(
    grid_spec: str = "smoke",
    run_id: str = "",
    runs_dir: str = "runs",
    wiring: Wiring | None = None,
    pipelines: list[str] | None = None,
) -> str:
    """Run a grid (a shipped name or a YAML path) on ``wiring``'s services and store (default: from the
    settings), only the ``pipelines`` named (``["A1", "B2"]``; default all); returns where the report is.

    ``runs_dir``: a local folder (the report is written there and copied to the store under
    ``runs/<run-id>/``), ``store`` (the run's store only), or a store URI (``s3://bucket/runs``,
    ``file:///srv/runs``: written under ``<uri>/<run-id>/``). In a container (``SKINGENBENCH_IN_CONTAINER``,
    or in a Kubernetes pod) the default ``runs`` means the store: a container's working folder is not kept.
    """
    grid = load_grid(grid_spec)
    selected = select_pipelines(grid, pipelines)
    run_id = run_id or f"{grid.name}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    _name_flow_run(
        _run_name(grid.name, run_id), [f"grid:{grid.name}", *(f"pipeline:{p}" for p in pipelines or [])]
    )
    wiring = wiring or Wiring.from_settings()
    with open_pools(wiring) as pools:
        return GridRun(grid, run_id, runs_dir, wiring, pools, selected).run()


def select_pipelines(grid: Grid, pipelines: list[str] | None) -> list[tuple[str, str, str | None]]:
    """The grid's pipeline rows (``Grid.pipelines``) that ``pipelines`` names (all when None)."""
    rows = grid.pipelines()
    if pipelines is None:
        return rows
    known = [name for name, _, _ in rows]
    unknown = [p for p in pipelines if p not in known]
    if unknown or not pipelines:
        raise GridError(
            f"pipelines: {', '.join(map(repr, unknown)) or 'none selected'} not in grid {grid.name!r} "
            f"(its pipelines: {', '.join(known)})"
        )
    return [row for row in rows if row[0] in pipelines]


def in_container(env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ if env is None else env)
    flag = env.get("SKINGENBENCH_IN_CONTAINER", "")
    if flag:
        return flag.lower() in ("1", "true", "yes")
    # Not /.dockerenv: development sandboxes run in containers too, and keep their working folder.
    return bool(env.get("KUBERNETES_SERVICE_HOST"))


def report_destination(
    runs_dir: str, run_id: str, store: ObjectStore
) -> tuple[Path | None, ObjectStore, str, str]:
    """Where a run's report goes: (local folder or None, store, key prefix, location to return)."""
    if runs_dir == "runs" and in_container():
        runs_dir = STORE_RUNS_DIR
    if runs_dir in (STORE_RUNS_DIR, f"{STORE_RUNS_DIR}:"):
        return None, store, "runs", store.uri(f"runs/{run_id}")
    if "://" in runs_dir:
        return None, store_from_uri(runs_dir), "", f"{runs_dir.rstrip('/')}/{run_id}"
    folder = Path(runs_dir) / run_id
    return folder, store, "runs", str(folder)


Key = tuple


def task_tags(env: dict[str, str] | None = None) -> bool:
    """Whether task runs carry tags (``stage:train-classifier``, ``pipeline:A2``, ``arm:A``):
    ``SKINGENBENCH_TASK_TAGS=1``. Off by default, measured: Prefect makes every tagged task run take a
    tag-concurrency slot (an API call and a lease) before it starts; on the local SQLite server of
    ``skingenbench run`` a 140-task phase ran 4x slower with tags and some task runs failed with
    "Unable to acquire concurrency slots ... 503" (database is locked). The flow run is tagged with the
    grid and its pipelines either way, and every task run's name says its stage and cell.
    """
    env = dict(os.environ if env is None else env)
    return env.get("SKINGENBENCH_TASK_TAGS", "").lower() in ("1", "true", "yes")


class GridRun:
    """One run of a grid: its cells as a dependency graph, each added to the scheduler when the results
    it needs exist (``when``), and the report from what they returned."""

    def __init__(
        self,
        grid: Grid,
        run_id: str,
        runs_dir: str,
        wiring: Wiring,
        pools: dict[str, EndpointPool],
        rows: list[tuple[str, str, str | None]],
    ) -> None:
        self.grid, self.run_id, self.runs_dir, self.wiring, self.pools = grid, run_id, runs_dir, wiring, pools
        self.rows = rows
        self.log = get_run_logger()
        self.store = wiring.store()
        self.notes: list[str] = []
        self.gate_names: dict[Key, str] = {}  # ("gate", prep, generator[, count]) -> its synthetic set's name
        self.gated_counts: dict[
            Key, int
        ] = {}  # (pipeline, classifier, seed) -> synthetic images it trained on
        self.results: dict[Key, Any] = {}
        self._waiting: list[tuple[frozenset, Callable[[], None]]] = []
        self.progress = GridProgress(run_id, grid.name)
        try:  # the run's Prefect progress artifact and results table (a view: the run goes on without)
            self.artifacts: PrefectProgressArtifacts | None = PrefectProgressArtifacts(self.progress)
        except Exception:
            self.log.warning("no Prefect progress artifacts for this run", exc_info=True)
            self.artifacts = None
        self.scheduler = CellScheduler(pools, self.progress)

    # -- the dependency graph ----------------------------------------------------------------------------
    def when(self, needs: list[Key], then: Callable[[], None]) -> None:
        """Call ``then`` once every key in ``needs`` has a result (now, if they all have one)."""
        missing = frozenset(k for k in needs if k not in self.results)
        if missing:
            self._waiting.append((missing, then))
        else:
            then()

    def _done(self, key: Key, result: Any) -> None:
        self.results[key] = result
        ready, still = [], []
        for needs, then in self._waiting:
            rest = needs - {key}
            (still if rest else ready).append((rest, then))
        self._waiting = still
        for _, then in ready:
            then()

    def cell(
        self, key: Key, pool: str, stage: str, name: str, task: Any, *args: Any, tags: tuple = ()
    ) -> None:
        """Add one cell whose result is stored under ``key`` (and releases what waits for it)."""
        self.scheduler.add(
            pool,
            stage,
            name,
            task,
            self.wiring,
            *args,
            tags=(f"stage:{stage.replace(' ', '-')}", *tags) if task_tags() else (),
            then=lambda result: self._done(key, result),
            summary=_summary,
        )

    # -- the run ---------------------------------------------------------------------------------------------
    def run(self) -> str:
        grid = self.grid
        self.services = {stage: tasks.service_info(self.wiring, stage) for stage in SERVICES}
        available = {stage: set(info["registry"]) for stage, info in self.services.items()}
        self._choose(available)
        self._plan()
        sources = [(grid.data.source, grid.data.path)] + [
            (s["source"], s["path"]) for s in grid.data.extra_sources
        ]
        for index, (source, path) in enumerate(sources):
            options = phantom_import_options(grid) if source == "phantom" else {}
            self.cell(
                ("import", index),
                "preprocessing",
                "import",
                f"import {source}",
                tasks.import_data,
                source,
                path,
                options,
                grid.data.seed,
            )
        self.when([("import", i) for i in range(len(sources))], self._split)
        try:
            self.scheduler.run()
        finally:
            self.progress.close()
        if self._waiting:  # a bug in the graph, not a user error: say what never got its inputs
            raise RuntimeError(f"{len(self._waiting)} cell(s) never got their inputs: {self._waiting}")
        return self._report()

    def _choose(self, available: dict[str, set[str]]) -> None:
        """Which generators, classifiers and preprocessing manifests the selected pipelines need."""
        grid = self.grid
        wanted = {extra for _, _, extra in self.rows if extra not in (None, "augment")}
        self.generators = [g for g in grid.generators if g in available["generation"] and g in wanted]
        for missing in sorted(set(grid.generators) - set(available["generation"])):
            self.notes.append(
                f"generator `{missing}` is not registered on the generation service: pipelines "
                f"A{GENERATOR_NUMBERS[missing]}/B{GENERATOR_NUMBERS[missing]} were skipped"
            )
        self.classifiers = [c for c in grid.classifiers if c in available["classification"]]
        for missing in sorted(set(grid.classifiers) - set(self.classifiers)):
            self.notes.append(
                f"classifier `{missing}` is not registered on the classification service; skipped"
            )
        self.rows = [r for r in self.rows if r[2] in (None, "augment") or r[2] in self.generators]
        self.preps = [p for p in grid.preprocessing if any(r[1] == p for r in self.rows)]
        self.kinds = {
            prep: ["all"]
            + (["train"] if self.generators else [])
            + (["augmented"] if any(r[1] == prep and r[2] == "augment" for r in self.rows) else [])
            for prep in self.preps
        }
        self.evaluating = bool(self.generators) and "evaluation" in SERVICES and bool(available["evaluation"])
        if self.generators and not available["evaluation"]:
            self.notes.append(
                "the evaluation service has nothing registered: generative metrics were skipped"
            )
        self.cells = [
            (pipeline, prep, extra, classifier, seed)
            for pipeline, prep, extra in self.rows
            for classifier in self.classifiers
            for seed in grid.seeds
        ]
        names = {c[0] for c in self.cells}
        self.comparisons = [c for c in self.cells if not c[0].endswith("1") and c[0][0] + "1" in names]
        self.gradcams = [
            prep for prep in self.preps if self.classifiers and PREPROCESSING_LETTERS[prep] + "1" in names
        ]
        # The dose–response axis (grid.py): each generator cell again at every other ratio, e.g. A2@r0.5.
        self.ratios = sorted({float(r) for r in grid.synthetic_ratio})
        self.ratio_cells = [
            (ratio_pipeline(c[0], ratio), *c[1:], ratio)
            for c in self.cells
            if c[2] not in (None, "augment")
            for ratio in self.ratios
            if ratio != DEFAULT_SYNTHETIC_RATIO
        ]
        # The quality gate (flows/quality_gate.py): each training mix measured and checked before training.
        self.gating = bool(grid.quality_gate.get("enabled")) and bool(self.generators)
        if self.gating and not self.evaluating:
            raise ValueError(
                "quality_gate.enabled needs the evaluation service's memorization check, and the evaluation "
                "service has nothing registered"
            )

    def _plan(self) -> None:
        grid, progress = self.grid, self.progress
        phantom = grid.data.source == "phantom"
        dermgan = "dermgan" in self.generators
        plans = {
            "import": 1 + len(grid.data.extra_sources),
            "split": 1,
            "preprocess": sum(len(k) for k in self.kinds.values()),
            "quality": len(self.preps) if grid.quality_report and phantom else 0,
            "train generator": len(self.preps) * len(self.generators),
            "controllability": len(self.preps) if dermgan else 0,
            "evaluate": len(self.preps) if self.evaluating else 0,
            "class anchoring": len(self.gradcams) if dermgan and self.evaluating else 0,
            "train classifier": len(self.cells) + len(self.ratio_cells),
            "test classifier": len(self.cells) + len(self.ratio_cells),
            "compare": len(self.comparisons)
            + sum(r > 0 and c[0] + "1" in {p for p, *_ in self.cells} for c, *_, r in self.ratio_cells),
            "grad-cam": len(self.gradcams),
        }
        for stage, count in plans.items():
            if count:
                progress.plan(stage, count)

    # -- data ------------------------------------------------------------------------------------------------
    def _split(self) -> None:
        grid = self.grid
        manifests = [self.results[("import", i)]["manifest"] for i in range(1 + len(grid.data.extra_sources))]
        fractions = (grid.split.train, grid.split.val, grid.split.test)
        self.cell(
            ("split",),
            "preprocessing",
            "split",
            "split by lesion",
            tasks.split,
            manifests,
            fractions,
            grid.split.seed,
        )
        self.when([("split",)], self._after_split)

    def _after_split(self) -> None:
        grid = self.grid
        split = self.results[("split",)]
        self.curation = _read_json(self.store, split["outputs"]["report_json"])
        train_label_count = int(self.curation["counts"].get(grid.synthetic_label, {}).get("train", 0))
        self.synthetic_count = grid.synthetic_count or train_label_count
        self.counts = _synthetic_counts(grid, self.synthetic_count, train_label_count)
        self.one_set = (self.counts["evaluation"], self.counts["evaluation_first_seed"]) == (
            self.synthetic_count,
            grid.split.seed,
        )
        # Ratios above the default need more images than the training mix (seeds continue it); those
        # below draw their subset from it (the classification service picks synthetic_count, seeded).
        counts = {ratio_count(r, self.synthetic_count) for r in self.ratios} if self.ratio_cells else set()
        self.extra_mixes = sorted(n for n in counts if n > self.synthetic_count)
        if self.generators:
            self.progress.plan(
                "sample",
                len(self.preps) * len(self.generators) * ((1 if self.one_set else 2) + len(self.extra_mixes)),
            )
        if self.gating:
            for stage in ("gate measure", "quality gate"):
                self.progress.plan(
                    stage, len(self.preps) * len(self.generators) * (1 + len(self.extra_mixes))
                )
        self.log.info(
            "split: %s; %d training %s images",
            self.curation["totals"],
            train_label_count,
            grid.synthetic_label,
        )
        for prep in self.preps:
            self._arm(prep, split["manifest"])

    # -- preprocessing arms --------------------------------------------------------------------------------
    def _arm(self, prep: str, manifest: dict[str, Any]) -> None:
        grid, letter = self.grid, PREPROCESSING_LETTERS[prep]
        config = grid.preprocessing_config.get(prep, {})
        variants = {
            "all": (0, None),
            "train": (0, ["train"]),
            "augmented": (grid.augment_copies, ["train"]),
        }
        for kind in self.kinds[prep]:
            copies, splits = variants[kind]
            args = (manifest, prep, grid.profile, config, grid.split.seed)
            if kind != "all":
                args += (copies, splits)
            self.cell(
                ("arm", prep, kind),
                "preprocessing",
                "preprocess",
                f"preprocess {letter}/{kind}",
                tasks.preprocess,
                *args,
                tags=(f"arm:{letter}",),
            )
        if grid.quality_report and grid.data.source == "phantom":
            imported = self.results[("import", 0)]["manifest"]
            self.cell(
                ("quality", prep),
                "preprocessing",
                "quality",
                f"quality {letter}",
                tasks.quality,
                imported,
                prep,
                grid.profile,
                config,
                tags=(f"arm:{letter}",),
            )
        for generator in self.generators:
            self.when([("arm", prep, "train")], lambda g=generator: self._train_generator(prep, g))
        for cell in self.cells + self.ratio_cells:
            if cell[1] == prep:
                self._classifier_cell(*cell)
        if self.evaluating:
            self._evaluation(prep)

    # -- generators ------------------------------------------------------------------------------------------
    def _train_generator(self, prep: str, generator: str) -> None:
        grid, name = self.grid, generator_pipeline(prep, generator)
        pipeline, tags = (
            name.split("-")[0],
            (f"pipeline:{name.split('-')[0]}", f"arm:{PREPROCESSING_LETTERS[prep]}"),
        )
        self.cell(
            ("model", prep, generator),
            "generation",
            "train generator",
            f"train generator {pipeline}/{generator}",
            tasks.train_generator,
            self.results[("arm", prep, "train")]["manifest"],
            generator,
            grid.profile,
            training_config(grid.generator_config.get(generator, {})),
            grid.synthetic_label,
            grid.split.seed,
            name,
            tags=tags,
        )

        def sample() -> None:
            model = self.results[("model", prep, generator)]["outputs"]["model"]
            # The training mix: the same request as before the evaluation set was its own (same content address).
            self.cell(
                ("mix", prep, generator),
                "generation",
                "sample",
                f"sample {pipeline}/mix",
                tasks.sample,
                model,
                self.synthetic_count,
                grid.split.seed,
                name,
                *sampling_conditioning(grid.generator_config.get(generator, {})),
                tags=tags,
            )
            self._gate(prep, ("mix", prep, generator), name, tags)
            for count in self.extra_mixes:  # the dose–response axis' larger mixes
                self.cell(
                    ("mix", prep, generator, count),
                    "generation",
                    "sample",
                    f"sample {pipeline}/mix {count}",
                    tasks.sample,
                    model,
                    count,
                    grid.split.seed,
                    f"{name} x{count}",
                    *sampling_conditioning(grid.generator_config.get(generator, {})),
                    tags=tags,
                )
                self._gate(prep, ("mix", prep, generator, count), f"{name} x{count}", tags)
            if self.one_set:  # the evaluation set is the training mix: one job
                self.when(
                    [("mix", prep, generator)],
                    lambda: self._done(
                        ("evaluation set", prep, generator), self.results[("mix", prep, generator)]
                    ),
                )
            else:  # image i with seed i (the service gives image i seed + i), as the reference's seeds 0–4999
                self.cell(
                    ("evaluation set", prep, generator),
                    "generation",
                    "sample",
                    f"sample {pipeline}/eval",
                    tasks.sample,
                    model,
                    self.counts["evaluation"],
                    self.counts["evaluation_first_seed"],
                    f"{name} evaluation",
                    tags=tags,
                )
            if generator == "dermgan":  # does DermGAN draw what it is asked for? (size, centre, skin tone)
                self.cell(
                    ("control", prep),
                    "generation",
                    "controllability",
                    f"controllability {pipeline}",
                    tasks.controllability,
                    model,
                    grid.controllability,
                    grid.split.seed,
                    name,
                    tags=tags,
                )

        self.when([("model", prep, generator)], sample)

    def _gate(self, prep: str, mix: Key, name: str, tags: tuple) -> None:
        """With the grid's quality gate on: the mix measured by the arm's own pipeline (the statistics the
        real training images carry), then the gate (memorization check + ranges) under ``("gate", …)``."""
        if not self.gating:
            return
        grid, letter = self.grid, PREPROCESSING_LETTERS[prep]
        measured, gate = ("gate measure", *mix[1:]), ("gate", *mix[1:])
        baseline = self._baseline(prep)
        self.when(
            [mix],
            lambda: self.cell(
                measured,
                "preprocessing",
                "gate measure",
                f"gate measure {name}",
                tasks.preprocess,
                self.results[mix]["manifest"],
                prep,
                grid.profile,
                grid.preprocessing_config.get(prep, {}),
                grid.split.seed,
                tags=tags,
            ),
        )
        self.when(
            [mix, measured, ("arm", prep, "train"), *([baseline] if baseline else [])],
            lambda: self.cell(
                gate,
                "evaluation",
                "quality gate",
                f"quality gate {name}",
                tasks.quality_gate,
                self.results[("arm", prep, "train")]["manifest"],
                self.results[mix]["manifest"],
                self.results[measured]["manifest"],
                grid.synthetic_label,
                grid.evaluation,
                grid.quality_gate,
                self.results[baseline]["checkpoint"] if baseline else "",
                grid.split.seed,
                name,
                tags=(*tags, f"arm:{letter}"),
            ),
        )
        self.gate_names[gate] = name

    # -- classifiers -------------------------------------------------------------------------------------------
    def _classifier_cell(
        self,
        pipeline: str,
        prep: str,
        extra: str | None,
        classifier: str,
        seed: int,
        ratio: float | None = None,
    ) -> None:
        grid = self.grid
        regime = "real" if extra is None else "real+augment" if extra == "augment" else "real+synthetic"
        count, run_pipeline, mix = self.synthetic_count, pipeline, ("mix", prep, extra)
        real_only = pipeline[0] + "1"
        if ratio is not None:  # a dose–response cell (grid.py): round(ratio × the training mix's count)
            count = ratio_count(ratio, self.synthetic_count)
            mix = mix if count <= self.synthetic_count else (*mix, count)
            if count == 0:  # real-only training: pipeline 1's request (name and count too), so its job
                regime, run_pipeline, count = "real", real_only, self.synthetic_count
        needs = [("arm", prep, "all")]
        needs += [("arm", prep, "augmented")] if regime == "real+augment" else []
        needs += [mix] if regime == "real+synthetic" else []
        gate = ("gate", *mix[1:]) if self.gating and regime == "real+synthetic" else None
        needs += [gate] if gate else []
        if ratio is not None and regime == "real" and any(c[0] == real_only for c in self.cells):
            needs += [("cell", real_only, classifier, seed)]  # after it: the service returns that job
        key, name = (pipeline, classifier, seed), f"{pipeline}/{classifier}/seed{seed}"
        run_name = f"{run_pipeline}/{classifier}/seed{seed}"
        tags = (f"pipeline:{pipeline}", f"arm:{pipeline[0]}")

        def train() -> None:
            data = self.results[("arm", prep, "all")]["manifest"]
            synthetic = [self.results[mix]["manifest"]] if regime == "real+synthetic" else []
            augmented = (
                self.results[("arm", prep, "augmented")]["manifest"] if regime == "real+augment" else None
            )
            trained, exclude = count, None
            if gate:  # the gate's rejections stay out; fewer passing than asked: all that passed
                exclude = self.results[gate]["rejected_ids"]
                trained = trained_count(count, self.results[gate]["gate"]["accepted_count"])
                self.gated_counts[key] = trained
            self.cell(
                ("cell", *key),
                "classification",
                "train classifier",
                f"train {name}",
                tasks.train_classifier,
                data,
                classifier,
                grid.profile,
                grid.classifier_config.get(classifier, {}),
                regime,
                synthetic,
                augmented,
                trained,
                grid.synthetic_label,
                seed,
                run_name,
                exclude,
                tags=tags,
            )

        def test() -> None:
            self.cell(
                ("test", *key),
                "classification",
                "test classifier",
                f"test {name}",
                tasks.test_classifier,
                self.results[("cell", *key)]["checkpoint"],
                self.results[("arm", prep, "all")]["manifest"],
                grid.bootstrap_samples,
                seed,
                name,
                tags=tags,
            )

        self.when(needs, train)
        self.when([("cell", *key)], test)
        if (
            ratio is None
            and pipeline.endswith("1")
            and prep in self.gradcams
            and (classifier, seed) == (self.classifiers[0], grid.seeds[0])
        ):
            self.when(
                [("cell", *key)],
                lambda: self.cell(
                    ("gradcam", pipeline),
                    "classification",
                    "grad-cam",
                    f"grad-cam {name}",
                    tasks.gradcam,
                    self.results[("cell", *key)]["checkpoint"],
                    self.results[("arm", prep, "all")]["manifest"],
                    4,
                    "/".join(map(str, key)),
                    tags=tags,
                ),
            )
        dose_baseline = ratio is not None and regime != "real" and any(c[0] == real_only for c in self.cells)
        if (pipeline, prep, extra, classifier, seed) in self.comparisons or dose_baseline:
            baseline = (real_only, classifier, seed)

            def compare() -> None:
                self.cell(
                    ("compare", *key),
                    "classification",
                    "compare",
                    f"compare {pipeline} vs {baseline[0]}/{classifier}/seed{seed}",
                    tasks.compare,
                    self.results[("test", *baseline)]["outputs"]["result_json"],
                    self.results[("test", *key)]["outputs"]["result_json"],
                    grid.bootstrap_samples,
                    seed,
                    f"{pipeline} vs {baseline[0]} {classifier} seed{seed}",
                    tags=tags,
                )

            self.when([("test", *key), ("test", *baseline)], compare)

    # -- evaluation of the synthetic sets -------------------------------------------------------------------
    def _baseline(self, prep: str) -> Key | None:
        """The arm's real-only classifier cell (first classifier, first seed) when the grid has one: the
        domain feature space of its evaluation and its quality gate, and the class-anchoring judge."""
        letter = PREPROCESSING_LETTERS[prep]
        if not self.classifiers or not any(c[:1] == (letter + "1",) for c in self.cells):
            return None
        return ("cell", letter + "1", self.classifiers[0], self.grid.seeds[0])

    def _evaluation(self, prep: str) -> None:
        """The arm's generators' evaluation sets in one request (their feature space is shared: one
        embedding per arm), with its real-only classifier when it has one (class anchoring)."""
        grid, letter = self.grid, PREPROCESSING_LETTERS[prep]
        baseline = self._baseline(prep)
        has_baseline = baseline is not None
        needs = [("arm", prep, "train")] + [("evaluation set", prep, g) for g in self.generators]
        needs += [baseline] if has_baseline else []
        tags = (f"arm:{letter}",)

        def evaluate() -> None:
            sets = {
                generator_pipeline(prep, g): self.results[("evaluation set", prep, g)]["manifest"]
                for g in self.generators
            }
            checkpoint = self.results[baseline]["checkpoint"] if has_baseline else ""
            self.cell(
                ("evaluation", prep),
                "evaluation",
                "evaluate",
                f"evaluate {letter}",
                tasks.evaluate,
                self.results[("arm", prep, "train")]["manifest"],
                sets,
                grid.synthetic_label,
                grid.evaluation,
                checkpoint,
                grid.split.seed,
                prep,
                tags=tags,
            )

        self.when(needs, evaluate)
        if (
            "dermgan" in self.generators and has_baseline
        ):  # the real-only classifier on DermGAN's requested classes

            def anchoring() -> None:
                self.cell(
                    ("anchoring", prep),
                    "evaluation",
                    "class anchoring",
                    f"class anchoring {letter}5",
                    tasks.class_anchoring,
                    self.results[("arm", prep, "train")]["manifest"],
                    self.results[("control", prep)]["manifest"],
                    str(grid.evaluation.get("profile", grid.profile)),
                    self.results[baseline]["checkpoint"],
                    grid.split.seed,
                    f"{generator_pipeline(prep, 'dermgan')}-controllability",
                    tags=tags,
                )

            self.when([("arm", prep, "train"), ("control", prep), baseline], anchoring)

    # -- report ---------------------------------------------------------------------------------------------------
    def _collected(self) -> dict[str, Any]:
        r, grid = self.results, self.grid
        pairs = [(p, g) for p in self.preps for g in self.generators]
        return {
            "run_id": self.run_id,
            "grid": grid.to_dict(),
            "notes": self.notes,
            "imported": [r[("import", i)] for i in range(1 + len(grid.data.extra_sources))],
            "split": r[("split",)],
            "curation": self.curation,
            "arms": {
                prep: {kind: r[("arm", prep, kind)] for kind in self.kinds[prep]} for prep in self.preps
            },
            "quality": {p: r[("quality", p)] for p in self.preps if ("quality", p) in r},
            "generators": {f"{p}/{g}": r[("mix", p, g)] for p, g in pairs},
            "evaluation_sets": {f"{p}/{g}": r[("evaluation set", p, g)] for p, g in pairs},
            "synthetic_counts": self.counts,
            "generator_models": {f"{p}/{g}": r[("model", p, g)] for p, g in pairs},
            "tests": {"/".join(map(str, c[0:1] + c[3:])): r[("test", c[0], c[3], c[4])] for c in self.cells},
            "comparisons": {
                "/".join(map(str, c[0:1] + c[3:])): r[("compare", c[0], c[3], c[4])] for c in self.comparisons
            },
            "gradcams": {k[1]: v for k, v in r.items() if k[0] == "gradcam"},
            "evaluations": {p: r[("evaluation", p)] for p in self.preps if ("evaluation", p) in r},
            "controllability": {
                p: {**r[("control", p)], "anchoring": r.get(("anchoring", p))}
                for p in self.preps
                if ("control", p) in r
            },
            "endpoints": {stage: [e.target for e in pool.endpoints] for stage, pool in self.pools.items()},
            "services": self.services,
            "pipelines": [row[0] for row in self.rows],
            "dose_response": self._dose_response(),
            "quality_gate": {name: r[key]["gate"] for key, name in self.gate_names.items() if key in r},
        }

    def _dose_response(self) -> list[dict[str, Any]]:
        """Every generator cell with its synthetic ratio and count (ratio 0: pipeline 1's test) for
        ``report_dose_response.py``; empty when the grid has no ratio axis."""
        if not self.ratio_cells:
            return []
        r, rows = self.results, []
        cells = [(*c, DEFAULT_SYNTHETIC_RATIO) for c in self.cells if c[2] not in (None, "augment")]
        zero = {(c[1], c[2], c[3], c[4]) for c in self.ratio_cells if c[5] == 0}
        for pipeline, prep, generator, classifier, seed, ratio in cells + self.ratio_cells:
            rows.append(
                {
                    "pipeline": pipeline,
                    "arm": prep,
                    "generator": generator,
                    "classifier": classifier,
                    "seed": seed,
                    "ratio": ratio,
                    "synthetic_count": self.gated_counts.get(
                        (pipeline, classifier, seed), ratio_count(ratio, self.synthetic_count)
                    ),
                    "test": r.get(("test", pipeline, classifier, seed)),
                    "comparison": r.get(("compare", pipeline, classifier, seed)),
                }
            )
            real_only = (PREPROCESSING_LETTERS[prep] + "1", classifier, seed)
            named = (prep, generator, classifier, seed) in zero
            if ratio == DEFAULT_SYNTHETIC_RATIO and not named and ("test", *real_only) in r:
                # ratio 0 is pipeline 1 when the axis does not name it
                rows.append({**rows[-1], "pipeline": real_only[0], "ratio": 0.0, "synthetic_count": 0})
                rows[-1].update(test=r[("test", *real_only)], comparison=None)
        return rows

    def _report(self) -> str:
        report = build_report(self.store, self._collected())
        folder, store, prefix, location = report_destination(self.runs_dir, self.run_id, self.store)
        write_report(store, folder, self.run_id, report, prefix=prefix)
        create_markdown_artifact(
            markdown=report.markdown[:200_000],
            key=artifact_key("report", self.run_id),
            description=f"SkinGenBench report {self.run_id} ({location})",
        )
        for table_name, rows in report.tables.items():
            if rows:
                create_table_artifact(
                    table=rows,
                    key=artifact_key(table_name, self.run_id),
                    description=f"{table_name.replace('_', ' ')} of run {self.run_id}",
                )
        self.log.info("report: %s", f"{location}/report.md")
        return location


def _summary(result: Any) -> dict[str, Any]:
    """A finished cell's row in the results table: its result's top-level scalars (a few)."""
    values = result.get("result", {}) if isinstance(result, dict) else {}
    row = {}
    for name, value in values.items():
        if isinstance(value, (int, float, str)) and not isinstance(value, bool) and len(str(value)) <= 40:
            row[name] = value
        if len(row) == 6:
            break
    return row
