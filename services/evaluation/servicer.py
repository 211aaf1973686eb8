"""The evaluation servicer: synthetic image sets against a real set, as one job.

A thin layer over the cores in this package. ``StartEvaluation`` plans the evaluation at once
(``plan.py``: reads the manifests, checks metrics, options, image counts and that the weights file is
present, so a bad request is refused before a job exists) and starts an ``evaluate`` job. The job runs
the evaluation (``evaluate.py``: features through the feature cache, metrics, plots) and writes the JSON
report, the Markdown summary (``report_markdown.py``) and the PNGs to the store under a
content-addressed prefix.
"""

from __future__ import annotations

import json
from typing import Any

from skingenbench.services.core.errors import NotFound
from skingenbench.services.core.hashing import content_address, output_prefix
from skingenbench.services.evaluation.core.extractors import FEATURE_EXTRACTORS
from skingenbench.services.evaluation.core.metrics import METRICS
from skingenbench.services.evaluation.core.report_markdown import report_markdown
from skingenbench.services.evaluation.evaluate import evaluate
from skingenbench.services.evaluation.plan import plan_evaluation
from skingenbench.services.platform.jobs_service import job_reply
from skingenbench.services.platform.server import ServiceContext
from skingenbench.services.platform.servicer import (
    entry_from_description,
    list_response,
    request_to_dict,
    service_info,
)

from skingenbench.api.v1 import evaluation_pb2_grpc

STAGE = "evaluation"
STAGE_VERSION = "1"


def _describe(name: str) -> dict[str, Any]:
    for registry in (METRICS, FEATURE_EXTRACTORS):
        if name in registry:
            return registry.describe(name)
    raise NotFound(f"no metric or feature extractor named {name!r}",
                   hint=f"registered: {', '.join(METRICS.names() + FEATURE_EXTRACTORS.names())}")


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
        data = request_to_dict(request)
        plan_evaluation(self.ctx.store, data)  # refuses a bad request before a job exists
        return job_reply(self.ctx.runner, "evaluate", data)


def _evaluate_job(request: dict[str, Any], ctx) -> dict[str, Any]:
    plan = plan_evaluation(ctx.store, request)
    ctx.progress(0, 0, "planned: " + ", ".join(plan.metrics))
    result = evaluate(ctx.store, plan, ctx.progress, ctx.check_cancelled)
    report = result.report
    provenance = report["provenance"]
    address = content_address(STAGE, STAGE_VERSION, [provenance["real"]["set_hash"]] + [
        s["set_hash"] for s in provenance["synthetic"].values()], {
        "metrics": plan.metrics, "configs": provenance["configs"], "extractor": (provenance["extractor"] or {}).get(
            "weights_sha256", ""), "domain": (provenance["domain_extractor"] or {}).get("weights_sha256", ""),
        "names": list(provenance["synthetic"])}, plan.seed)
    prefix = output_prefix(STAGE, address)
    for name, (data, filename) in result.files.items():
        info = ctx.store.put_bytes(f"{prefix}/{filename}", data, "image/png")
        ctx.add_output(name, ctx.store.uri(info.key), info.sha256)
    report["outputs"] = {o["name"]: o["uri"] for o in ctx.record.outputs}
    info = ctx.store.put_bytes(f"{prefix}/report.json", json.dumps(report, indent=1, sort_keys=True).encode(),
                               "application/json")
    ctx.add_output("report_json", ctx.store.uri(info.key), info.sha256)
    md = ctx.store.put_bytes(f"{prefix}/report.md", report_markdown(report).encode(), "text/markdown")
    ctx.add_output("report_md", ctx.store.uri(md.key), md.sha256)
    summary_keys = ("count", "fid", "kid_mean", "kid_std", "isc_mean", "isc_std", "precision", "recall",
                    "domain_fid", "domain_kid_mean", "domain_kid_std", "memorized_share", "anchoring_share")
    return {
        "sets": {n: {k: v for k, v in s.items() if k in summary_keys} for n, s in report["sets"].items()},
        "real": {k: v for k, v in report["real"].items() if k != "image_sizes"},
        "extractor": (provenance["extractor"] or {}).get("extractor"),
        "weights_sha256": (provenance["extractor"] or {}).get("weights_sha256"),
        "weights_upstream": (provenance["extractor"] or {}).get("weights_upstream"),
        "feature_cache": provenance["feature_cache"],
        "notes": report["notes"],
    }


def setup(ctx: ServiceContext) -> None:
    evaluation_pb2_grpc.add_EvaluationServicer_to_server(EvaluationServicer(ctx), ctx.server)
    ctx.runner.register_handler("evaluate", _evaluate_job)

