"""The flow's classifier phase on 16 real classification servers whose training, test and comparison
job kinds are fast fakes (they sleep, then write a checkpoint or a result): does the flow keep every
endpoint busy? Used by tests/flows/test_flow_concurrency.py and bench/flow_concurrency.py.

The servers, channels, job runner, endpoint pools, Prefect flow and tasks are the real ones; only the
work inside a job is replaced (the nearest real substitute for 16 GPUs on a 2-core machine). Each fake
job records on which endpoint it ran and when, so concurrency is measured where the work happens; the
slots the flow holds are sampled beside it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from google.protobuf.json_format import MessageToJson
from skingenbench.services.platform.job_kind import JobKind, JobOutputs, JobPlan
from skingenbench.services.platform.settings import SERVICES

from skingenbench.api.v1 import classification_pb2
from tests.common.service_helpers import running

# Seconds of fake work per job kind: a test is shorter than a training, a comparison shorter still.
# Long enough that Prefect's own cost per task run (~0.07 s of a busy 2-core machine: 140 tasks in 9 s)
# is not what is measured: 16 endpoints need 16 / 1.5 s ≈ 11 task runs a second.
DURATIONS = {"train_classifier": 1.5, "test_classifier": 0.3, "compare_classifiers": 0.1}
GRID = {
    "name": "concurrency",
    "preprocessing": ["basic", "advanced"],
    "generators": ["stylegan2_ada", "ddpm", "dermgan"],
    "classifiers": ["resnet18", "resnet50", "vgg16", "efficientnet_b0", "vit_base_patch16_224"],
    "seeds": [0, 1, 2],
}  # 2 arms x 5 pipelines x 5 classifiers x 3 seeds = 150 classifier cells


@dataclass(frozen=True)
class FakePlan(JobPlan):
    seconds: float


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: list[tuple[int, str, float, float]] = []  # (endpoint index, kind, start, end)

    def add(self, *job) -> None:
        with self.lock:
            self.jobs.append(job)


def _fake(real_name: str, real_stage: str, request: type, output: str) -> type:
    class Fake(JobKind):
        name = real_name
        stage = real_stage
        request_type = request
        plan_type = FakePlan
        recorder: ClassVar[Recorder]
        index: ClassVar[int]

        def plan(self, message, store) -> FakePlan:
            return FakePlan(self.address([], {"request": MessageToJson(message)}), DURATIONS[real_name])

        def run(self, plan: FakePlan, ctx) -> JobOutputs:
            start = time.monotonic()
            time.sleep(plan.seconds)
            info = ctx.store.put_bytes(f"{plan.output_prefix}/{output}", json.dumps({"fake": True}).encode())
            self.recorder.add(self.index, real_name, start, time.monotonic())
            outputs = JobOutputs(summary={"balanced_accuracy": 0.5})
            outputs.add(output, ctx.store.uri(info.key), info.sha256)
            return outputs

    return Fake


KINDS = (
    ("train_classifier", "classifier-train", classification_pb2.TrainClassifierRequest, "checkpoint"),
    ("test_classifier", "classifier-test", classification_pb2.TestClassifierRequest, "result_json"),
    ("compare_classifiers", "classifier-compare", classification_pb2.CompareRequest, "result_json"),
)


def _fake_setup(recorder: Recorder, index: int):
    def setup(ctx) -> None:
        for spec in KINDS:
            kind = _fake(*spec)
            kind.recorder, kind.index = recorder, index
            ctx.runner.register(kind())  # replaces the real kind of that name

    return setup


def measure(recorder: Recorder, endpoints: int) -> dict[str, Any]:
    """Concurrency from the jobs' own start and end times: the most at once, the time-weighted mean
    while work was still waiting (from the first moment all endpoints were busy to the last start),
    and the makespan against the ideal (all work spread evenly over the endpoints)."""
    jobs = sorted(recorder.jobs, key=lambda j: j[2])
    edges = sorted([(j[2], 1) for j in jobs] + [(j[3], -1) for j in jobs], key=lambda e: (e[0], e[1]))
    busy, peak, timeline = 0, 0, []
    for t, step in edges:
        busy += step
        peak = max(peak, busy)
        timeline.append((t, busy))
    full = next((t for t, b in timeline if b >= endpoints), None)
    last_start = jobs[-1][2]
    weighted = 0.0
    if full is not None and last_start > full:
        for (t0, b), (t1, _) in zip(timeline, timeline[1:], strict=False):
            lo, hi = max(t0, full), min(t1, last_start)
            if hi > lo:
                weighted += b * (hi - lo)
    steady = weighted / (last_start - full) if full is not None and last_start > full else float(peak)
    work = sum(j[3] - j[2] for j in jobs)
    makespan = max(j[3] for j in jobs) - jobs[0][2]
    return {
        "endpoints": endpoints,
        "jobs": len(jobs),
        "jobs_per_kind": {k: sum(1 for j in jobs if j[1] == k) for k in DURATIONS},
        "endpoints_used": len({j[0] for j in jobs}),
        "max_concurrency": peak,
        "steady_concurrency": round(steady, 2),
        "makespan_s": round(makespan, 2),
        "ideal_s": round(work / endpoints, 2),
        "makespan_over_ideal": round(makespan / (work / endpoints), 3),
        "first_test_before_last_training_ended": min(j[2] for j in jobs if j[1] == "test_classifier")
        < max(j[3] for j in jobs if j[1] == "train_classifier"),
    }


def simulate(store, endpoints: int = 16) -> dict[str, Any]:
    """Run the grid's 150 classifier cells (train, test, compare) through the flow's own graph code
    (``GridRun``) on ``endpoints`` one-slot classification servers; returns ``measure``'s numbers."""
    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner
    from skingenbench.flows.benchmark import MAX_TASK_THREADS, GridRun
    from skingenbench.flows.grid import parse_grid
    from skingenbench.flows.wiring import Wiring, open_pools

    recorder = Recorder()
    held: list[tuple[float, int]] = []  # (time, slots the flow holds): sampled while the cells run
    grid = parse_grid(GRID, "concurrency")
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(running("classification", store, extra_setup=_fake_setup(recorder, i)))
            for i in range(endpoints)
        ]
        targets = {stage: ("127.0.0.1:9",) for stage in SERVICES}  # never called: only classification is
        targets["classification"] = tuple(s.target for s in servers)
        wiring = Wiring(targets, store.root_uri)

        @flow(name="classifier-phase", task_runner=ThreadPoolTaskRunner(max_workers=MAX_TASK_THREADS))
        def classifier_phase() -> dict[str, Any]:
            with open_pools(wiring) as pools:
                run = GridRun(grid, "concurrency-sim", "runs", wiring, pools, grid.pipelines())
                available = {
                    "generation": set(grid.generators),
                    "classification": set(grid.classifiers),
                    "evaluation": set(),
                    "preprocessing": set(),
                }
                run._choose(available)
                run._plan()
                run.gradcams = []  # Grad-CAM is one cell per arm; the phase measured is the grid's cells
                run.synthetic_count = 10
                manifest = {"uri": store.uri("sim/manifest.json"), "sha256": "", "item_count": 0}
                for prep in grid.preprocessing:  # the inputs of the classifier cells, as if made already
                    for kind in ("all", "augmented"):
                        run.results[("arm", prep, kind)] = {"manifest": manifest}
                    for generator in grid.generators:
                        run.results[("mix", prep, generator)] = {"manifest": manifest}
                for cell in run.cells:
                    run._classifier_cell(*cell)
                stop = threading.Event()
                sampler = threading.Thread(target=_sample_slots, args=(pools["classification"], held, stop))
                sampler.start()
                try:
                    run.scheduler.run()
                finally:
                    stop.set()
                    sampler.join()
                run.progress.close()
                return {
                    "cells": len(run.cells),
                    "snapshot": run.progress.snapshot(),
                    "peak_submitted": run.scheduler.peak_in_flight,
                }

        # Prefect's INFO lines (three per task run, each formatted for the console and sent to the API)
        # are dropped at the source: the scheduler is measured here, not the logging.
        prefect_logger = logging.getLogger("prefect")
        level = prefect_logger.level
        prefect_logger.setLevel(logging.WARNING)
        try:
            flow_result = classifier_phase()
        finally:
            prefect_logger.setLevel(level)
    numbers = measure(recorder, endpoints)
    numbers["steady_slots_held"] = _steady_slots(held, recorder, endpoints)
    return {**numbers, **flow_result}


def _sample_slots(pool, held: list[tuple[float, int]], stop: threading.Event) -> None:
    while not stop.is_set():
        held.append((time.monotonic(), sum(e.busy for e in pool.endpoints)))
        time.sleep(0.01)


def _steady_slots(held: list[tuple[float, int]], recorder: Recorder, endpoints: int) -> float:
    """Mean of the slots the flow held (a job started or running on that endpoint) while work waited:
    the flow's side of "every endpoint busy". The jobs' own times (``measure``) add each job's start on
    the server, which on a machine short of CPU is where the rest of the time goes."""
    last_start = max(j[2] for j in recorder.jobs)
    full = next((t for t, n in held if n >= endpoints), None)
    window = [n for t, n in held if full is not None and full <= t <= last_start]
    return round(sum(window) / len(window), 2) if window else 0.0
