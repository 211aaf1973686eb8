"""The preprocessing servicer: a thin layer over the data and preprocessing cores."""

from __future__ import annotations

from services.common.server import ServiceContext
from services.common.servicer import service_info
from skingenbench.v1 import preprocessing_pb2_grpc


class PreprocessingServicer(preprocessing_pb2_grpc.PreprocessingServicer):
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def GetServiceInfo(self, request, context):
        return service_info(self.ctx, [], device="cpu")


def setup(ctx: ServiceContext) -> None:
    preprocessing_pb2_grpc.add_PreprocessingServicer_to_server(PreprocessingServicer(ctx), ctx.server)
