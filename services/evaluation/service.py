"""The evaluation servicer: a thin layer over the metric and feature-extractor registries."""

from __future__ import annotations

from services.common.errors import NotFound
from services.common.registry import Registry
from services.common.server import ServiceContext
from services.common.servicer import entry_from_description, list_response, service_info
from skingenbench.v1 import evaluation_pb2_grpc

METRICS = Registry("metric")
FEATURE_EXTRACTORS = Registry("feature_extractor")


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
        for registry in (METRICS, FEATURE_EXTRACTORS):
            if request.name in registry:
                return entry_from_description(registry.describe(request.name))
        raise NotFound(f"no metric or feature extractor named {request.name!r}",
                       hint=f"registered: {', '.join(METRICS.names() + FEATURE_EXTRACTORS.names()) or 'none'}")


def setup(ctx: ServiceContext) -> None:
    evaluation_pb2_grpc.add_EvaluationServicer_to_server(EvaluationServicer(ctx), ctx.server)
