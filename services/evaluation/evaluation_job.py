"""The evaluation service's ``evaluate`` job: synthetic image sets against a real set, on the job framework.

``plan`` (``plan.py``) reads the manifests and checks metrics, options, image counts and the model
files once, at Start, pinning each by sha256 and naming the output prefix; ``run`` evaluates
(``evaluate.py``: features through the feature cache, metrics, plots) and writes the PNGs, the JSON
report and its Markdown summary (``report_markdown.py``) under that prefix. The framework marks them
done, so an identical evaluation finds them instead of recomputing.
"""

from __future__ import annotations

import json
from typing import Any

from skingenbench.services.evaluation.core.report_markdown import report_markdown
from skingenbench.services.evaluation.evaluate import evaluate
from skingenbench.services.evaluation.plan import EvaluationPlan, plan_evaluation
from skingenbench.services.platform.job_kind import JobKind, JobOutputs
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.servicer import request_to_dict
from skingenbench.services.platform.store import ObjectStore

from skingenbench.api.v1 import evaluation_pb2

SUMMARY_KEYS = (
    "count",
    "fid",
    "kid_mean",
    "kid_std",
    "isc_mean",
    "isc_std",
    "precision",
    "recall",
    "domain_fid",
    "domain_kid_mean",
    "domain_kid_std",
    "fid_real_baseline",
    "fid_real_baseline_count",
    "domain_fid_real_baseline",
    "domain_fid_real_baseline_count",
    "memorized_share",
    "anchoring_share",
)


class EvaluateKind(JobKind[evaluation_pb2.EvaluateRequest, EvaluationPlan]):
    name = "evaluate"
    stage = "evaluation"
    # 2: the address includes anchoring labels, extractor settings and grids; 3: sample-size warnings, the
    # real-vs-real baseline at the synthetic sets' N, no zero KID std from a single subset, strict_sample_size;
    # 4: that baseline only when asked (fid_real_baseline / domain_fid_real_baseline), so a default report has none;
    # torch-fidelity's networks run channels_last on the CPU too (features differ by ~1e-6)
    version = "4"
    request_type = evaluation_pb2.EvaluateRequest
    plan_type = EvaluationPlan

    def plan(self, request: evaluation_pb2.EvaluateRequest, store: ObjectStore) -> EvaluationPlan:
        return plan_evaluation(store, request_to_dict(request), self.address)

    def run(self, plan: EvaluationPlan, ctx: JobContext) -> JobOutputs:
        ctx.progress(0, 0, "planned: " + ", ".join(plan.metrics))
        result = evaluate(ctx.store, plan, ctx.progress, ctx.check_cancelled)
        report, prefix = result.report, plan.output_prefix
        outputs = JobOutputs(summary=_summary(report))
        for name, (data, filename) in result.files.items():
            info = ctx.store.put_bytes(f"{prefix}/{filename}", data, "image/png")
            outputs.add(name, ctx.store.uri(info.key), info.sha256)
        report["outputs"] = {name: ref.uri for name, ref in outputs.files.items()}
        info = ctx.store.put_bytes(
            f"{prefix}/report.json", json.dumps(report, indent=1, sort_keys=True).encode(), "application/json"
        )
        outputs.add("report_json", ctx.store.uri(info.key), info.sha256)
        md = ctx.store.put_bytes(f"{prefix}/report.md", report_markdown(report).encode(), "text/markdown")
        outputs.add("report_md", ctx.store.uri(md.key), md.sha256)
        return outputs


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """The job's result: each set's headline numbers, the real set, the extractor and the notes."""
    provenance = report["provenance"]
    extractor = provenance["extractor"] or {}
    return {
        "sets": {n: {k: v for k, v in s.items() if k in SUMMARY_KEYS} for n, s in report["sets"].items()},
        "real": {k: v for k, v in report["real"].items() if k != "image_sizes"},
        "extractor": extractor.get("extractor"),
        "weights_sha256": extractor.get("weights_sha256"),
        "weights_upstream": extractor.get("weights_upstream"),
        "feature_cache": provenance["feature_cache"],
        "notes": report["notes"],
        "warnings": report.get("warnings", []),
        "sample_sizes": report.get("sample_sizes", {}),
    }
