"""The generation servicer: a thin layer over the generator registry (bodies arrive per backend)."""

from __future__ import annotations

from services.common.registry import Registry
from services.common.server import ServiceContext
from services.common.servicer import entry_from_description, list_response, service_info
from skingenbench.v1 import generation_pb2_grpc

GENERATORS = Registry("generator")


class GenerationServicer(generation_pb2_grpc.GenerationServicer):
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def GetServiceInfo(self, request, context):
        return service_info(self.ctx, GENERATORS.names())

    def ListModels(self, request, context):
        return list_response(GENERATORS.describe, GENERATORS.names())

    def DescribeModel(self, request, context):
        return entry_from_description(GENERATORS.describe(request.name))


def setup(ctx: ServiceContext) -> None:
    generation_pb2_grpc.add_GenerationServicer_to_server(GenerationServicer(ctx), ctx.server)
