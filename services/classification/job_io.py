"""What every classification job kind reads from and writes to the store while it runs: the checkpoint its
plan pinned, its outputs as JSON or bytes, and its progress while predicting.

Where the outputs live (a content address of the plan's inputs, settings and seed) and how a repeated
request finds them is the job framework's (``platform/job_kind.py``); the kinds here share its version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from skingenbench.services.core.classifiers.checkpoint import classifier_from_bytes
from skingenbench.services.core.device import select_device
from skingenbench.services.platform.job_kind import ObjectRef
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.manifest_io import read_verified
from skingenbench.services.platform.store import ObjectStore

STAGE_VERSION = "1"
# The study's class of interest: what generators synthesise, and the positive class of the one-vs-rest
# ("melanoma") metrics and tests.
POSITIVE = "MEL"


def put_json(store: ObjectStore, key: str, value: Any) -> tuple[str, str]:
    info = store.put_bytes(key, json.dumps(value, indent=1, sort_keys=True).encode(), "application/json")
    return store.uri(key), info.sha256


def put_bytes(store: ObjectStore, key: str, data: bytes, content_type: str) -> tuple[str, str]:
    return store.uri(key), store.put_bytes(key, data, content_type).sha256


def load_pinned_checkpoint(ctx: JobContext, checkpoint: ObjectRef):
    """(model, config, metadata) of the checkpoint a plan pinned; a file changed since is DATA_LOSS."""
    data = read_verified(ctx.store, ctx.store.key_from_uri(checkpoint.uri), checkpoint.sha256)
    model, config, metadata = classifier_from_bytes(data, select_device())
    return model, config, metadata


def predicting_progress(ctx: JobContext) -> Callable[[int, int], Any]:
    """An ``on_batch`` callback for ``predict_items``: stops at a cancel between batches, reports progress."""
    return lambda done, total: (ctx.check_cancelled(), ctx.progress(done, total, "predicting"))
