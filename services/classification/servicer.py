"""The classification servicer: train, test, compare, explain and predict, as jobs on the shared store.

A thin layer over the jobs (``training_job``, ``testing_job``, ``gradcam_job``, ``prediction_job``), which
are thin layers over the cores (models, data, training, inference, gradcam, bootstrap, paired_tests). Each
``Start*`` call checks its request before a job starts (a bad request is an error, not a failed job), and
each job writes its outputs under a content address of its inputs, so the same request finds the
finished outputs instead of recomputing them. A training job checkpoints to the store every epoch and
when asked to stop; the same request after a restart continues from that checkpoint.
"""

from __future__ import annotations

from typing import Any

from skingenbench.services.classification import gradcam_job, prediction_job, testing_job, training_job
from skingenbench.services.classification.request_checks import (
    checkpoint_metadata,
    count_field,
    require_object,
    split_name,
)
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.classifiers.models import CLASSIFIERS
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.platform.jobs_service import job_reply
from skingenbench.services.platform.server import ServiceContext
from skingenbench.services.platform.servicer import (
    entry_from_description,
    list_response,
    request_to_dict,
    service_info,
)

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

    def _start(self, kind: str, fields: dict[str, Any]):
        return job_reply(self.ctx.runner, kind, fields)

    def StartTraining(self, request, context):
        fields = request_to_dict(request)
        training_job.plan_training(self.ctx.store, fields)
        return self._start("train_classifier", fields)

    def StartTest(self, request, context):
        fields = request_to_dict(request)
        self._model_and_data(request)
        split_name(request.split)
        count_field(fields, "bootstrap_samples", testing_job.MAX_BOOTSTRAP)
        count_field(fields, "seed")
        return self._start("test_classifier", fields)

    def StartComparison(self, request, context):
        fields = request_to_dict(request)
        require_object(self.ctx.store, request.baseline_result_uri, "baseline_result_uri")
        require_object(self.ctx.store, request.candidate_result_uri, "candidate_result_uri")
        count_field(fields, "bootstrap_samples", testing_job.MAX_BOOTSTRAP)
        count_field(fields, "seed")
        return self._start("compare_classifiers", fields)

    def StartGradCam(self, request, context):
        fields = request_to_dict(request)
        self._model_and_data(request)
        split_name(request.split)
        count_field(fields, "count", gradcam_job.MAX_GRADCAM_COUNT)
        unknown = sorted(set(request.labels) - set(CLASSES))
        if unknown:
            raise InvalidArgument(f"unknown labels {unknown}", hint=f"classes: {', '.join(CLASSES)}")
        return self._start("gradcam", fields)

    def StartPredict(self, request, context):
        return job_reply(self.ctx.runner, prediction_job.PredictKind.name, request)

    def _model_and_data(self, request) -> None:
        checkpoint_metadata(self.ctx.store, request.checkpoint_uri)
        require_object(self.ctx.store, request.data.uri, "data manifest")


def setup(ctx: ServiceContext) -> None:
    classification_pb2_grpc.add_ClassificationServicer_to_server(ClassificationServicer(ctx), ctx.server)
    ctx.runner.register_handler("train_classifier", training_job.train_classifier_job)
    ctx.runner.register_handler("test_classifier", testing_job.test_classifier_job)
    ctx.runner.register_handler("compare_classifiers", testing_job.compare_classifiers_job)
    ctx.runner.register_handler("gradcam", gradcam_job.gradcam_job)
    ctx.runner.register(prediction_job.PredictKind())
