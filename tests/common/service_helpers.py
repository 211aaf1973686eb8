"""Start real servers on free ports for tests, with real job kinds registered through extra_setup."""

from __future__ import annotations

import contextlib

from skingenbench.services.platform.server import ServiceContext, start_service
from skingenbench.services.platform.settings import ServiceSettings


@contextlib.contextmanager
def running(stage: str, store, extra_setup=None, **settings_overrides):
    settings = ServiceSettings(stage=stage, host="127.0.0.1", port=0, shutdown_grace_s=5.0, **settings_overrides)
    service = start_service(stage, settings, store, extra_setup)
    try:
        yield service
    finally:
        service.stop(grace_s=5.0)


def counting_job(total: int = 20, sleep_s: float = 0.02):
    """A real job kind: counts to ``total``, checkpointing the count to the store after each step,
    and resumes from the checkpoint — the same contract the training jobs follow."""
    import json
    import time

    def handler(request: dict, ctx) -> dict:
        key = f"checkpoints/{ctx.job_id}.json"
        step = json.loads(ctx.store.get_bytes(key))["step"] if ctx.store.exists(key) else 0
        resumed_from = step
        while step < int(request.get("total", total)):
            ctx.check_cancelled()
            time.sleep(float(request.get("sleep_s", sleep_s)))
            step += 1
            ctx.store.put_bytes(key, json.dumps({"step": step}).encode())
            ctx.progress(step, int(request.get("total", total)), "counting", value=float(step))
        info = ctx.store.put_bytes(f"outputs/{ctx.job_id}.txt", str(step).encode())
        ctx.add_output("count", ctx.store.uri(info.key), info.sha256)
        return {"count": step, "resumed_from": resumed_from}

    return handler


def failing_job(request: dict, ctx) -> dict:
    raise RuntimeError("boom: the handler has a bug")


def add_test_jobs(ctx: ServiceContext) -> None:
    ctx.runner.register_handler("count", counting_job())
    ctx.runner.register_handler("fail", failing_job)
