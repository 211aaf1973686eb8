"""The generation servicer: registry metadata, trained models, the three job kinds, and synchronous Generate.

Each ``Start*`` call submits its job kind (``training_job.TrainKind``, ``sampling_job.SampleKind``,
``controllability_job.ControllabilityKind``): the kind's plan checks the request once, before a job
exists, so a bad request is answered with its status. Generate (``generate_call``) is guarded by a
bounded queue and per-call deadlines (``admission``).
"""

from __future__ import annotations

import json

from skingenbench.services.generation import (
    controllability_job,
    generate_call,
    models,
    sampling_job,
    training_job,
)
from skingenbench.services.generation.admission import Admission, generation_setting
from skingenbench.services.generation.core.registry import GENERATORS
from skingenbench.services.platform.jobs_service import job_reply
from skingenbench.services.platform.server import ServiceContext
from skingenbench.services.platform.servicer import entry_from_description, list_response, service_info

from skingenbench.api.v1 import common_pb2, generation_pb2, generation_pb2_grpc


def model_to_proto(store, record: models.ModelRecord) -> generation_pb2.TrainedModel:
    checkpoint = store.uri(record.checkpoint["key"]) if record.checkpoint else ""
    return generation_pb2.TrainedModel(
        model_uri=store.uri(record.key),
        generator=record.generator,
        profile=record.profile,
        trained_on=common_pb2.ManifestRef(
            uri=record.trained_on["uri"],
            sha256=record.trained_on["sha256"],
            item_count=int(record.trained_on["item_count"]),
        ),
        classes=record.classes,
        step=record.step,
        checkpoint_uri=checkpoint,
        provenance_json=json.dumps(record.provenance, sort_keys=True),
        complete=record.complete,
        name=record.name,
    )


class GenerationServicer(generation_pb2_grpc.GenerationServicer):
    def __init__(self, ctx: ServiceContext, cache: models.BackendCache) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.cache = cache
        self.admission = Admission(
            generation_setting(ctx, "concurrency", 2), generation_setting(ctx, "queue", 2)
        )

    # -- metadata -----------------------------------------------------------------------------------------
    def GetServiceInfo(self, request, context):
        return service_info(self.ctx, GENERATORS.names())

    def ListModels(self, request, context):
        return list_response(GENERATORS.describe, GENERATORS.names())

    def DescribeModel(self, request, context):
        return entry_from_description(GENERATORS.describe(request.name))

    def ListTrainedModels(self, request, context):
        if request.generator:
            GENERATORS.get(request.generator)
        records = models.list_records(self.store, request.generator)
        return generation_pb2.ListTrainedModelsResponse(
            models=[model_to_proto(self.store, r) for r in records]
        )

    # -- jobs ---------------------------------------------------------------------------------------------
    def StartTraining(self, request, context):
        # Spellings of one request (profile left out, classes unsorted) share one job, as they share one model.
        return job_reply(
            self.ctx.runner, training_job.TrainKind.name, training_job.canonical_request(request)
        )

    # A model name resolves at Start: the job (and its id) is for the model the name means now.
    def StartSampling(self, request, context):
        request = sampling_job.with_resolved_model(self.store, request)
        return job_reply(self.ctx.runner, sampling_job.SampleKind.name, request)

    def StartControllability(self, request, context):
        request = sampling_job.with_resolved_model(self.store, request)
        return job_reply(self.ctx.runner, controllability_job.ControllabilityKind.name, request)

    # -- synchronous generation -----------------------------------------------------------------------------
    def Generate(self, request, context):
        return generate_call.generate(self.store, self.cache, self.admission, request, context)


def setup(ctx: ServiceContext) -> None:
    cache = models.BackendCache(ctx.store, size=generation_setting(ctx, "model_cache", 2))
    generation_pb2_grpc.add_GenerationServicer_to_server(GenerationServicer(ctx, cache), ctx.server)
    ctx.runner.register(training_job.TrainKind())
    ctx.runner.register(sampling_job.SampleKind(cache))
    ctx.runner.register(controllability_job.ControllabilityKind(cache))
