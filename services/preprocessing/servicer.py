"""The preprocessing servicer: data import and splitting, pipelines, and the quality report.

A thin layer: each ``Start*`` call submits its request to a job kind (``import_job``, ``split_job``,
``preprocess_job``, ``quality_job``), whose plan checks it before anything is queued, so a bad request
is answered with its status instead of becoming a failed job; the kinds' runs let the data and
preprocessing code do the work on the shared store.
"""

from __future__ import annotations

from typing import Any

from skingenbench.services.core.errors import NotFound
from skingenbench.services.platform.jobs_service import job_reply
from skingenbench.services.platform.server import ServiceContext
from skingenbench.services.platform.servicer import entry_from_description, service_info
from skingenbench.services.preprocessing.core import pipeline_registry
from skingenbench.services.preprocessing.import_job import ImportKind
from skingenbench.services.preprocessing.preprocess_job import PreprocessKind
from skingenbench.services.preprocessing.quality_job import QualityReportKind
from skingenbench.services.preprocessing.split_job import SplitKind

from skingenbench.api.v1 import common_pb2, preprocessing_pb2_grpc


def _describe(name: str) -> dict[str, Any]:
    for entry in pipeline_registry.describe():
        if entry["name"] == name:
            return entry
    raise NotFound(
        f"no preprocessing pipeline named {name!r}",
        hint=f"registered: {', '.join(pipeline_registry.list_pipelines())}",
    )


class PreprocessingServicer(preprocessing_pb2_grpc.PreprocessingServicer):
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def GetServiceInfo(self, request, context):
        return service_info(self.ctx, pipeline_registry.list_pipelines(), device="cpu")

    def ListPipelines(self, request, context):
        return common_pb2.ListRegistryResponse(
            entries=[entry_from_description(d) for d in pipeline_registry.describe()]
        )

    def DescribePipeline(self, request, context):
        return entry_from_description(_describe(request.name))

    def StartImport(self, request, context):
        return job_reply(self.ctx.runner, ImportKind.name, request)

    def StartSplit(self, request, context):
        return job_reply(self.ctx.runner, SplitKind.name, request)

    def StartPreprocess(self, request, context):
        return job_reply(self.ctx.runner, PreprocessKind.name, request)

    def StartQualityReport(self, request, context):
        return job_reply(self.ctx.runner, QualityReportKind.name, request)


def setup(ctx: ServiceContext) -> None:
    preprocessing_pb2_grpc.add_PreprocessingServicer_to_server(PreprocessingServicer(ctx), ctx.server)
    for kind in (ImportKind(), SplitKind(), PreprocessKind(), QualityReportKind()):
        ctx.runner.register(kind)
