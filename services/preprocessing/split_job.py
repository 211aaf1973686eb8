"""The preprocessing service's ``split`` job: combine manifests (dropping duplicate images) and split them
by lesion, stratified by class and source (``services/data/core/splitting.py``).

The plan pins every input manifest and addresses the split as it always was (``split/<address>`` of the
inputs' item hashes, the fractions and the seed: ``operations.split_prefix``).
"""

from __future__ import annotations

from dataclasses import dataclass

from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.data.core.splitting import validate_fractions
from skingenbench.services.data.operations import SPLIT_STAGE, SPLIT_VERSION, split_manifests, split_prefix
from skingenbench.services.platform.job_kind import JobKind, JobOutputs, JobPlan
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.store import ObjectStore
from skingenbench.services.preprocessing.import_job import data_outputs
from skingenbench.services.preprocessing.request_checks import PinnedManifest, pin_input

from skingenbench.api.v1 import preprocessing_pb2

# SplitRequest's fractions are plain proto3 doubles: all three zero means this default.
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)


@dataclass(frozen=True)
class SplitPlan(JobPlan):
    inputs: tuple[PinnedManifest, ...]
    fractions: tuple[float, float, float]
    seed: int


class SplitKind(JobKind[preprocessing_pb2.SplitRequest, SplitPlan]):
    name = "split"
    stage = SPLIT_STAGE
    version = SPLIT_VERSION
    request_type = preprocessing_pb2.SplitRequest
    plan_type = SplitPlan

    def plan(self, request: preprocessing_pb2.SplitRequest, store: ObjectStore) -> SplitPlan:
        if not request.inputs:
            raise InvalidArgument("StartSplit needs at least one input manifest")
        pinned = [
            pin_input(store, ref, f"input manifest {index}", f"inputs[{index}]")
            for index, ref in enumerate(request.inputs)
        ]
        fractions = (request.train_fraction, request.val_fraction, request.test_fraction)
        fractions = validate_fractions(fractions if any(fractions) else DEFAULT_FRACTIONS)
        prefix = split_prefix([manifest for manifest, _ in pinned], fractions, request.seed)
        return SplitPlan(prefix, tuple(ref for _, ref in pinned), fractions, request.seed)

    def run(self, plan: SplitPlan, ctx: JobContext) -> JobOutputs:
        ctx.progress(0, 1, "splitting by lesion")
        manifests = [ref.read(ctx.store) for ref in plan.inputs]
        parents = [ref.parent(ctx.store) for ref in plan.inputs]
        outcome = split_manifests(
            ctx.store, manifests, parents, plan.fractions, plan.seed, plan.output_prefix
        )
        return data_outputs(ctx.store, outcome)
