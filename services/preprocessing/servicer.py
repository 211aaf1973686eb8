"""The preprocessing servicer: data import and splitting, pipelines, and the quality report.

A thin layer: it validates requests, starts jobs, and lets the cores (services/data,
services/preprocessing) do the work on the shared store.
"""

from __future__ import annotations

import json
from typing import Any

from skingenbench.services.core.errors import InvalidArgument, NotFound
from skingenbench.services.data.operations import default_workers, import_source, split_sources
from skingenbench.services.platform.jobs_service import job_reply
from skingenbench.services.platform.server import ServiceContext
from skingenbench.services.platform.servicer import (
    entry_from_description,
    parse_json_field,
    request_to_dict,
    service_info,
)
from skingenbench.services.preprocessing.batch import PreprocessSpec, preprocess_manifest
from skingenbench.services.preprocessing.core import pipeline_registry
from skingenbench.services.preprocessing.quality_report import quality_markdown, quality_report

from skingenbench.api.v1 import common_pb2, preprocessing_pb2_grpc


def _describe(name: str) -> dict[str, Any]:
    for entry in pipeline_registry.describe():
        if entry["name"] == name:
            return entry
    raise NotFound(f"no preprocessing pipeline named {name!r}", hint=f"registered: {', '.join(pipeline_registry.list_pipelines())}")


def _check_pipeline(name: str, profile: str, config_json: str) -> dict[str, Any]:
    overrides = parse_json_field(config_json, "config_json")
    if name not in pipeline_registry.list_pipelines():
        raise InvalidArgument(f"unknown pipeline {name!r}", hint=f"one of: {', '.join(pipeline_registry.list_pipelines())}")
    pipeline_registry.pipeline_config(name, profile or "paper", **overrides)  # validates before a job starts
    return overrides


class PreprocessingServicer(preprocessing_pb2_grpc.PreprocessingServicer):
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def GetServiceInfo(self, request, context):
        return service_info(self.ctx, pipeline_registry.list_pipelines(), device="cpu")

    def ListPipelines(self, request, context):
        return common_pb2.ListRegistryResponse(entries=[entry_from_description(d) for d in pipeline_registry.describe()])

    def DescribePipeline(self, request, context):
        return entry_from_description(_describe(request.name))

    def StartImport(self, request, context):
        if request.source not in ("ham10000", "milk10k", "phantom"):
            raise InvalidArgument(f"unknown data source {request.source!r}", hint="one of: ham10000, milk10k, phantom")
        parse_json_field(request.options_json, "options_json")
        return job_reply(self.ctx.runner, "import", request_to_dict(request))

    def StartSplit(self, request, context):
        if not request.inputs:
            raise InvalidArgument("StartSplit needs at least one input manifest")
        for ref in request.inputs:
            self._require_manifest(ref)
        return job_reply(self.ctx.runner, "split", request_to_dict(request))

    def _require_manifest(self, ref) -> None:
        if not ref.uri:
            raise InvalidArgument("input manifest is required")
        key = self.ctx.store.key_from_uri(ref.uri)
        if not self.ctx.store.exists(key):
            raise NotFound(f"input manifest not found: {ref.uri}")

    def StartPreprocess(self, request, context):
        self._require_manifest(request.input)
        _check_pipeline(request.pipeline, request.profile, request.config_json)
        PreprocessSpec(request.pipeline, augment_copies=request.augment_copies,
                       max_failure_fraction=request.max_failure_fraction or 0.05, seed=request.seed).validate()
        return job_reply(self.ctx.runner, "preprocess", request_to_dict(request))

    def StartQualityReport(self, request, context):
        self._require_manifest(request.input)
        _check_pipeline(request.pipeline or "advanced", request.profile, request.config_json)
        return job_reply(self.ctx.runner, "quality_report", request_to_dict(request))


# -- job handlers: plain dict requests (as persisted), a JobContext for progress and outputs ---------
def _import_job(request: dict[str, Any], ctx) -> dict[str, Any]:
    options = parse_json_field(request.get("options_json", ""), "options_json")
    outcome = import_source(ctx.store, request["source"], request.get("source_uri", ""), options,
                            int(request.get("seed", 0)), progress=lambda d, t, m="": ctx.progress(d, t, m))
    return _data_outputs(ctx, outcome)


def _split_job(request: dict[str, Any], ctx) -> dict[str, Any]:
    inputs = [(ref["uri"], ref.get("sha256", "")) for ref in request["inputs"]]
    fractions = tuple(float(request.get(f"{name}_fraction", 0.0)) for name in ("train", "val", "test"))
    if not any(fractions):
        fractions = (0.70, 0.15, 0.15)
    ctx.progress(0, 1, "splitting by lesion")
    outcome = split_sources(ctx.store, inputs, fractions, int(request.get("seed", 0)))
    return _data_outputs(ctx, outcome)


def _data_outputs(ctx, outcome) -> dict[str, Any]:
    ctx.add_output("manifest", outcome.ref.uri, outcome.ref.sha256)
    for name, key in zip(("report_json", "report_md"), outcome.report_keys, strict=True):
        if key:
            ctx.add_output(name, ctx.store.uri(key))
    totals = outcome.report.get("totals", {})
    return {"item_count": outcome.ref.item_count, "totals": totals,
            "dropped": outcome.report.get("dropped", {}).get("total", 0) if isinstance(
                outcome.report.get("dropped"), dict) else len(outcome.report.get("dropped", []))}


def _preprocess_job(request: dict[str, Any], ctx) -> dict[str, Any]:
    spec = PreprocessSpec(
        pipeline=request["pipeline"],
        profile=request.get("profile") or "paper",
        overrides=parse_json_field(request.get("config_json", ""), "config_json"),
        seed=int(request.get("seed", 0)),
        augment_copies=int(request.get("augment_copies", 0)),
        splits=tuple(request.get("splits", [])),
        max_failure_fraction=float(request.get("max_failure_fraction") or 0.05),
    )
    outcome = preprocess_manifest(
        ctx.store, request["input"]["uri"], spec, input_sha256=request["input"].get("sha256", ""),
        workers=int(request.get("workers") or default_workers()),
        progress=lambda d, t, metrics: ctx.progress(d, t, "preprocessing", **metrics),
        should_stop=ctx.check_cancelled,
    )
    ctx.add_output("manifest", outcome.ref.uri, outcome.ref.sha256)
    return {"item_count": outcome.ref.item_count, "processed": outcome.processed, "skipped": outcome.skipped,
            "reused_output": outcome.reused}


def _quality_job(request: dict[str, Any], ctx) -> dict[str, Any]:
    name = request.get("pipeline") or "advanced"
    profile = request.get("profile") or "paper"
    report = quality_report(
        ctx.store, request["input"]["uri"], name, profile,
        parse_json_field(request.get("config_json", ""), "config_json"), int(request.get("limit", 0)),
        request["input"].get("sha256", ""), progress=lambda d, t: (ctx.check_cancelled(), ctx.progress(d, t)),
    )
    prefix = f"reports/quality/{ctx.job_id}"
    info = ctx.store.put_bytes(f"{prefix}/quality.json", json.dumps(report, indent=1).encode(), "application/json")
    ctx.add_output("report_json", ctx.store.uri(info.key), info.sha256)
    md = ctx.store.put_bytes(f"{prefix}/quality.md", quality_markdown(report).encode(), "text/markdown")
    ctx.add_output("report_md", ctx.store.uri(md.key), md.sha256)
    hair = report["hair_regions"]
    return {key: hair[key]["mean"] for key in ("psnr_hair_before", "psnr_hair_after", "psnr_outside_before",
                                                "psnr_outside_after", "hair_iou") if key in hair}


def setup(ctx: ServiceContext) -> None:
    preprocessing_pb2_grpc.add_PreprocessingServicer_to_server(PreprocessingServicer(ctx), ctx.server)
    ctx.runner.register_handler("import", _import_job)
    ctx.runner.register_handler("split", _split_job)
    ctx.runner.register_handler("preprocess", _preprocess_job)
    ctx.runner.register_handler("quality_report", _quality_job)
