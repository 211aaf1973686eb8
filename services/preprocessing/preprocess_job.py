"""The preprocessing service's ``preprocess`` job: a registered pipeline over a manifest's items.

The plan pins the input manifest, resolves the pipeline's config and addresses the output exactly as
:func:`skingenbench.services.preprocessing.batch.output_location` always has, so outputs written before
the job framework sit where an identical request looks for them. The run is
:func:`skingenbench.services.preprocessing.batch.run_batch`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.core.manifest_stream import StreamedManifest
from skingenbench.services.platform.job_kind import JobKind, JobOutputs, JobPlan, ObjectRef, finished_outputs
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.manifest_io import open_manifest
from skingenbench.services.platform.servicer import request_key
from skingenbench.services.platform.store import ObjectStore
from skingenbench.services.preprocessing.batch import (
    DEFAULT_MAX_FAILURE_FRACTION,
    STAGE,
    STAGE_VERSION,
    BatchTarget,
    PreprocessSpec,
    check_failures,
    plan_batch,
    run_batch,
    usable_cpus,
)
from skingenbench.services.preprocessing.request_checks import PinnedManifest, pipeline_overrides

from skingenbench.api.v1 import common_pb2, preprocessing_pb2

# Worker processes one job may start: each is a Python process with a pipeline (~100 MB), so a request
# may not ask for thousands; 64 is more cores than a preprocessing node has.
MAX_WORKERS = 64


@dataclass(frozen=True)
class PreprocessPlan(JobPlan):
    input: PinnedManifest
    spec: PreprocessSpec
    config: dict[str, Any]  # the pipeline's resolved config (profile + overrides), as recorded in provenance
    selected: int  # items the splits select: what max_failure_fraction is a fraction of
    workers: int  # 0: one per core of the machine that runs the job


class PreprocessKind(JobKind[preprocessing_pb2.PreprocessRequest, PreprocessPlan]):
    name = "preprocess"
    stage = STAGE  # the address is per pipeline (``preprocess-<pipeline>/...``): see batch.output_location
    version = STAGE_VERSION
    request_type = preprocessing_pb2.PreprocessRequest
    plan_type = PreprocessPlan

    def plan(self, request: preprocessing_pb2.PreprocessRequest, store: ObjectStore) -> PreprocessPlan:
        with _pin_streamed(store, request.input) as (manifest, pinned):
            return self._plan(request, store, manifest, pinned)

    def _plan(
        self,
        request: preprocessing_pb2.PreprocessRequest,
        store: ObjectStore,
        manifest: StreamedManifest,
        pinned: PinnedManifest,
    ) -> PreprocessPlan:
        profile = request.profile or "paper"
        overrides, _ = pipeline_overrides(request.pipeline, profile, request.config_json)
        spec = PreprocessSpec(
            request.pipeline,
            profile,
            overrides,
            request.seed,
            request.augment_copies,
            tuple(request.splits),
            # Presence, not truthiness: an explicit 0 asks for no failures at all.
            request.max_failure_fraction
            if request.HasField("max_failure_fraction")
            else DEFAULT_MAX_FAILURE_FRACTION,
        )
        if not 0 <= request.workers <= MAX_WORKERS:
            raise InvalidArgument(
                f"workers must be in 0..{MAX_WORKERS} (0: one per core), got {request.workers}",
                field="workers",
            )
        target = plan_batch(manifest, spec, request.input.uri)
        plan = PreprocessPlan(target.prefix, pinned, spec, target.config, target.selected, request.workers)
        _refuse_finished_run_over_threshold(store, plan)
        return plan

    def run(self, plan: PreprocessPlan, ctx: JobContext) -> JobOutputs:
        # As PinnedManifest.read, streamed: DATA_LOSS if the bytes changed since Start.
        with open_manifest(ctx.store, plan.input.ref.uri, plan.input.sha256) as source:
            outcome = run_batch(
                ctx.store,
                source,
                plan.input.parent(ctx.store),
                plan.spec,
                BatchTarget(plan.output_prefix, plan.config, plan.selected),
                workers=plan.workers or usable_cpus(),
                progress=lambda done, total, metrics: ctx.progress(done, total, "preprocessing", **metrics),
                should_stop=ctx.check_cancelled,
            )
        outputs = JobOutputs(
            summary={
                "item_count": outcome.ref.item_count,
                "processed": outcome.processed,
                "skipped": outcome.skipped,
                "reused_output": False,
            }
        )
        outputs.add("manifest", outcome.ref.uri, outcome.ref.sha256)
        return outputs


@contextlib.contextmanager
def _pin_streamed(
    store: ObjectStore, ref: common_pb2.ManifestRef
) -> Iterator[tuple[StreamedManifest, PinnedManifest]]:
    """``request_checks.pin_input`` with the manifest streamed (the same checks and errors): a Start over a
    large set holds no list of its items, as the run does not."""
    if not ref.uri:
        raise InvalidArgument("input manifest is required", field="input.uri")
    request_key(store, ref.uri, "input.uri")
    with open_manifest(store, ref.uri, ref.sha256) as manifest:
        yield manifest, PinnedManifest(ObjectRef(ref.uri, ref.sha256), manifest.sha256)


def _refuse_finished_run_over_threshold(store: ObjectStore, plan: PreprocessPlan) -> None:
    """The threshold is not part of the address, so an identical run may have finished under a looser one.

    The framework would reattach it; a stricter request must refuse it instead, as it would refuse to
    write it.
    """
    finished = finished_outputs(store, plan)
    if finished is not None:
        check_failures(
            int(finished.summary.get("skipped", 0)), plan.selected, plan.spec.max_failure_fraction, []
        )
