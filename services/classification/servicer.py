"""The classification servicer: train, test, compare, explain and predict, as jobs on the shared store.

A thin layer over the job kinds (``training_job``, ``testing_job``, ``gradcam_job``, ``prediction_job``),
which are thin layers over the cores (models, data, training, inference, gradcam, bootstrap, paired_tests).
Each ``Start*`` call submits its request to the job framework, which runs the kind's ``plan`` before a job
is queued (a bad request is the call's error status, not a failed job) and finds the outputs of an
identical finished job under the plan's content address instead of recomputing them. A training job
checkpoints to the store every epoch and when asked to stop; after a restart it continues from there.
"""

from __future__ import annotations

from skingenbench.services.classification.gradcam_job import GradCamKind
from skingenbench.services.classification.prediction_job import PredictKind
from skingenbench.services.classification.testing_job import CompareKind, TestKind
from skingenbench.services.classification.training_job import TrainKind
from skingenbench.services.core.classifiers.models import CLASSIFIERS
from skingenbench.services.platform.jobs_service import job_reply
from skingenbench.services.platform.server import ServiceContext
from skingenbench.services.platform.servicer import entry_from_description, list_response, service_info

from skingenbench.api.v1 import classification_pb2_grpc


class ClassificationServicer(classification_pb2_grpc.ClassificationServicer):
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def GetServiceInfo(self, request, context):
        return service_info(self.ctx, CLASSIFIERS.names())

    def ListClassifiers(self, request, context):
        return list_response(CLASSIFIERS.describe, CLASSIFIERS.names())

    def DescribeClassifier(self, request, context):
        return entry_from_description(CLASSIFIERS.describe(request.name))

    def StartTraining(self, request, context):
        return job_reply(self.ctx.runner, TrainKind.name, request)

    def StartTest(self, request, context):
        return job_reply(self.ctx.runner, TestKind.name, request)

    def StartComparison(self, request, context):
        return job_reply(self.ctx.runner, CompareKind.name, request)

    def StartGradCam(self, request, context):
        return job_reply(self.ctx.runner, GradCamKind.name, request)

    def StartPredict(self, request, context):
        return job_reply(self.ctx.runner, PredictKind.name, request)


def setup(ctx: ServiceContext) -> None:
    classification_pb2_grpc.add_ClassificationServicer_to_server(ClassificationServicer(ctx), ctx.server)
    for kind in (TrainKind(), TestKind(), CompareKind(), GradCamKind(), PredictKind()):
        ctx.runner.register(kind)
