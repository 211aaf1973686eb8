"""The store side that every classification job shares: where its outputs live, how they are written, how
a repeated request finds them, and how a job loads the checkpoint it runs.

A job's outputs live under a content address of its inputs, settings and seed (DESIGN.md, rule 3), and
``summary.json`` is written last, after every output: a prefix that has one holds a finished job, whose
outputs the same request re-attaches instead of recomputing them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from skingenbench.services.classification.request_checks import require_object
from skingenbench.services.core.classifiers.checkpoint import classifier_from_bytes
from skingenbench.services.core.device import select_device
from skingenbench.services.core.hashing import content_address, output_prefix, sha256_bytes
from skingenbench.services.platform.job_kind import ObjectRef
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.manifest_io import read_verified
from skingenbench.services.platform.store import ObjectStore

STAGE_VERSION = "1"
# The study's class of interest: what generators synthesise, and the positive class of the one-vs-rest
# ("melanoma") metrics and tests.
POSITIVE = "MEL"

Outputs = dict[str, tuple[str, str]]  # output name -> (uri, sha256)


def job_prefix(stage: str, inputs: list[str], settings: dict[str, Any], seed: int | None = None) -> str:
    """The store prefix of a job's outputs: a content address of its input hashes, settings and seed."""
    return output_prefix(stage, content_address(stage, STAGE_VERSION, inputs, settings, seed))


def put_json(store: ObjectStore, key: str, value: Any) -> tuple[str, str]:
    info = store.put_bytes(key, json.dumps(value, indent=1, sort_keys=True).encode(), "application/json")
    return store.uri(key), info.sha256


def put_bytes(store: ObjectStore, key: str, data: bytes, content_type: str) -> tuple[str, str]:
    return store.uri(key), store.put_bytes(key, data, content_type).sha256


def reuse_outputs(ctx: JobContext, prefix: str) -> dict[str, Any] | None:
    """The summary of an identical earlier job, its outputs re-attached; None if there is none."""
    if not ctx.store.exists(f"{prefix}/summary.json"):
        return None
    done = json.loads(ctx.store.get_bytes(f"{prefix}/summary.json"))
    for name, (uri, sha) in done["outputs"].items():
        ctx.add_output(name, uri, sha)
    return {**done["summary"], "reused_output": True}


def finish_job(ctx: JobContext, prefix: str, outputs: Outputs, summary: dict[str, Any]) -> dict[str, Any]:
    """Attach the outputs to the job and write the summary that marks the prefix as finished."""
    for name, (uri, sha) in outputs.items():
        ctx.add_output(name, uri, sha)
    put_json(ctx.store, f"{prefix}/summary.json", {"outputs": outputs, "summary": summary})  # last: complete
    return summary


def load_checkpoint(ctx: JobContext, uri: str):
    """(model, config, metadata, sha256 of the file) of a training job's checkpoint, on this service's device."""
    data = ctx.store.get_bytes(require_object(ctx.store, uri, "checkpoint"))
    model, config, metadata = classifier_from_bytes(data, select_device())
    return model, config, metadata, sha256_bytes(data)


def load_pinned_checkpoint(ctx: JobContext, checkpoint: ObjectRef):
    """(model, config, metadata) of the checkpoint a plan pinned; a file changed since is DATA_LOSS."""
    data = read_verified(ctx.store, ctx.store.key_from_uri(checkpoint.uri), checkpoint.sha256)
    model, config, metadata = classifier_from_bytes(data, select_device())
    return model, config, metadata


def predicting_progress(ctx: JobContext) -> Callable[[int, int], Any]:
    """An ``on_batch`` callback for ``predict_items``: stops at a cancel between batches, reports progress."""
    return lambda done, total: (ctx.check_cancelled(), ctx.progress(done, total, "predicting"))
