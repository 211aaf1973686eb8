"""The preprocessing service's ``quality_report`` job: artifact removal measured on phantom ground truth.

The report lives under a content address of the phantom manifest's items, the pipeline and its resolved
config, and the item limit (``quality-report/<address>``), so the same question asked again is answered
by the finished report. The measurement is
:func:`skingenbench.services.preprocessing.quality_report.quality_report`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from skingenbench.services.platform.job_kind import JobKind, JobOutputs, JobPlan
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.store import ObjectStore
from skingenbench.services.preprocessing.quality_report import phantom_items, quality_markdown, quality_report
from skingenbench.services.preprocessing.request_checks import PinnedManifest, pin_input, pipeline_overrides

from skingenbench.api.v1 import preprocessing_pb2

SUMMARY_KEYS = (
    "psnr_hair_before",
    "psnr_hair_after",
    "psnr_outside_before",
    "psnr_outside_after",
    "hair_iou",
)


@dataclass(frozen=True)
class QualityPlan(JobPlan):
    input: PinnedManifest
    pipeline: str
    profile: str
    overrides: dict[str, Any]
    limit: int


class QualityReportKind(JobKind[preprocessing_pb2.QualityReportRequest, QualityPlan]):
    name = "quality_report"
    stage = "quality-report"
    version = "1"
    request_type = preprocessing_pb2.QualityReportRequest
    plan_type = QualityPlan

    def plan(self, request: preprocessing_pb2.QualityReportRequest, store: ObjectStore) -> QualityPlan:
        manifest, pinned = pin_input(store, request.input, "phantom manifest")
        pipeline, profile = request.pipeline or "advanced", request.profile or "paper"
        overrides, config = pipeline_overrides(pipeline, profile, request.config_json)
        phantom_items(
            manifest, request.limit
        )  # refuses a manifest without ground truth, and a negative limit
        settings = {"pipeline": pipeline, "profile": profile, "config": config, "limit": request.limit}
        prefix = self.address([manifest.content_hash()], settings)
        return QualityPlan(prefix, pinned, pipeline, profile, overrides, request.limit)

    def run(self, plan: QualityPlan, ctx: JobContext) -> JobOutputs:
        def progress(done: int, total: int) -> None:
            ctx.check_cancelled()
            ctx.progress(done, total)

        report = quality_report(
            ctx.store,
            plan.input.ref.uri,
            plan.pipeline,
            plan.profile,
            plan.overrides,
            plan.limit,
            plan.input.sha256,
            progress=progress,
        )
        hair = report["hair_regions"]
        outputs = JobOutputs(summary={key: hair[key]["mean"] for key in SUMMARY_KEYS if key in hair})
        document = json.dumps(report, indent=1).encode()
        info = ctx.store.put_bytes(f"{plan.output_prefix}/quality.json", document, "application/json")
        outputs.add("report_json", ctx.store.uri(info.key), info.sha256)
        info = ctx.store.put_bytes(
            f"{plan.output_prefix}/quality.md", quality_markdown(report).encode(), "text/markdown"
        )
        outputs.add("report_md", ctx.store.uri(info.key), info.sha256)
        return outputs
