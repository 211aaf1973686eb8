"""The evaluation servicer: synthetic image sets against a real set, as one job.

A thin layer over the ``evaluate`` job kind (``evaluation_job.py``), whose plan step refuses a bad
request at ``StartEvaluation`` before a job exists, and over the metric and feature-extractor
registries, which the List/Describe calls enumerate.
"""

from __future__ import annotations

from typing import Any

from skingenbench.services.core.errors import NotFound
from skingenbench.services.evaluation.core.extractors import FEATURE_EXTRACTORS
from skingenbench.services.evaluation.core.metrics import METRICS
from skingenbench.services.evaluation.evaluation_job import EvaluateKind
from skingenbench.services.platform.jobs_service import job_reply
from skingenbench.services.platform.server import ServiceContext
from skingenbench.services.platform.servicer import entry_from_description, list_response, service_info

from skingenbench.api.v1 import evaluation_pb2_grpc


def _describe(name: str) -> dict[str, Any]:
    for registry in (METRICS, FEATURE_EXTRACTORS):
        if name in registry:
            return registry.describe(name)
    raise NotFound(
        f"no metric or feature extractor named {name!r}",
        hint=f"registered: {', '.join(METRICS.names() + FEATURE_EXTRACTORS.names())}",
    )


class EvaluationServicer(evaluation_pb2_grpc.EvaluationServicer):
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def GetServiceInfo(self, request, context):
        return service_info(self.ctx, METRICS.names() + FEATURE_EXTRACTORS.names())

    def ListMetrics(self, request, context):
        return list_response(METRICS.describe, METRICS.names())

    def ListFeatureExtractors(self, request, context):
        return list_response(FEATURE_EXTRACTORS.describe, FEATURE_EXTRACTORS.names())

    def Describe(self, request, context):
        return entry_from_description(_describe(request.name))

    def StartEvaluation(self, request, context):
        return job_reply(self.ctx.runner, EvaluateKind.name, request)


def setup(ctx: ServiceContext) -> None:
    evaluation_pb2_grpc.add_EvaluationServicer_to_server(EvaluationServicer(ctx), ctx.server)
    ctx.runner.register(EvaluateKind())
