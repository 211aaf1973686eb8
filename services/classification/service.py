"""The classification servicer: a thin layer over the classifier registry."""

from __future__ import annotations

from services.common.registry import Registry
from services.common.server import ServiceContext
from services.common.servicer import entry_from_description, list_response, service_info
from skingenbench.v1 import classification_pb2_grpc

CLASSIFIERS = Registry("classifier")


class ClassificationServicer(classification_pb2_grpc.ClassificationServicer):
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def GetServiceInfo(self, request, context):
        return service_info(self.ctx, CLASSIFIERS.names())

    def ListClassifiers(self, request, context):
        return list_response(CLASSIFIERS.describe, CLASSIFIERS.names())

    def DescribeClassifier(self, request, context):
        return entry_from_description(CLASSIFIERS.describe(request.name))


def setup(ctx: ServiceContext) -> None:
    classification_pb2_grpc.add_ClassificationServicer_to_server(ClassificationServicer(ctx), ctx.server)
