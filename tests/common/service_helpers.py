"""Start real servers on free ports for tests, with real job kinds registered through extra_setup."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass

from google.protobuf.struct_pb2 import Struct
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.platform.job_kind import JobKind, JobOutputs, JobPlan
from skingenbench.services.platform.server import ServiceContext
from skingenbench.services.platform.settings import ServiceSettings
from skingenbench.services.stages import start_service


@contextlib.contextmanager
def running(stage: str, store, extra_setup=None, **settings_overrides):
    settings = ServiceSettings(
        stage=stage, host="127.0.0.1", port=0, shutdown_grace_s=5.0, **settings_overrides
    )
    service = start_service(stage, settings, store, extra_setup)
    try:
        yield service
    finally:
        service.stop(grace_s=5.0)


@dataclass(frozen=True)
class CountPlan(JobPlan):
    total: int
    sleep_s: float


class CountKind(JobKind[Struct, CountPlan]):
    """A real job kind: counts to ``total``, checkpointing the count to the store after each step, and
    resumes from the checkpoint — the same contract the training jobs follow."""

    name = "count"
    stage = "test-count"
    request_type = Struct
    plan_type = CountPlan

    def plan(self, request: Struct, store) -> CountPlan:
        total, sleep_s = (
            int(request["total"]) if "total" in request else 20,
            float(request["sleep_s"]) if "sleep_s" in request else 0.02,
        )
        if total < 0:
            raise InvalidArgument(f"total must be >= 0, got {total}")
        return CountPlan(self.address([], {"total": total, "sleep_s": sleep_s}), total, sleep_s)

    def run(self, plan: CountPlan, ctx) -> JobOutputs:
        key = f"{plan.output_prefix}/checkpoint.json"
        step = json.loads(ctx.store.get_bytes(key))["step"] if ctx.store.exists(key) else 0
        resumed_from = step
        while step < plan.total:
            ctx.check_cancelled()
            time.sleep(plan.sleep_s)
            step += 1
            ctx.store.put_bytes(key, json.dumps({"step": step}).encode())
            ctx.progress(step, plan.total, "counting", value=float(step))
        info = ctx.store.put_bytes(f"{plan.output_prefix}/count.txt", str(step).encode())
        outputs = JobOutputs(summary={"count": step, "resumed_from": resumed_from})
        outputs.add("count", ctx.store.uri(info.key), info.sha256)
        return outputs


@dataclass(frozen=True)
class FailPlan(JobPlan):
    pass


class FailKind(JobKind[Struct, FailPlan]):
    """A job kind with a bug: its run raises, which must fail the job and never the server."""

    name = "fail"
    stage = "test-fail"
    request_type = Struct
    plan_type = FailPlan

    def plan(self, request: Struct, store) -> FailPlan:
        return FailPlan(self.address([], {}))

    def run(self, plan: FailPlan, ctx) -> JobOutputs:
        raise RuntimeError("boom: the handler has a bug")


def request(**fields) -> Struct:
    """A job request for the test kinds (a protobuf Struct: kinds take messages)."""
    message = Struct()
    message.update(fields)
    return message


def add_test_jobs(ctx: ServiceContext) -> None:
    ctx.runner.register(CountKind())
    ctx.runner.register(FailKind())
