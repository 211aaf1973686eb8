"""The four stages and the setup of each one's servicer: the composition root of a service process.

The platform's server runtime knows no stage (the import rule, docs/architecture.md): a process names
its stage here and gets the runtime started around that stage's servicer. Each stage is imported only
when it is served, so the preprocessing image, which has no torch, never imports a torch stage.
"""

from __future__ import annotations

from collections.abc import Callable

from skingenbench.services.platform import server
from skingenbench.services.platform.server import RunningService, StageSetup
from skingenbench.services.platform.settings import SERVICES, ServiceSettings
from skingenbench.services.platform.store import ObjectStore


def _preprocessing() -> StageSetup:
    from skingenbench.services.preprocessing.servicer import setup

    return setup


def _generation() -> StageSetup:
    from skingenbench.services.generation.servicer import setup

    return setup


def _evaluation() -> StageSetup:
    from skingenbench.services.evaluation.servicer import setup

    return setup


def _classification() -> StageSetup:
    from skingenbench.services.classification.servicer import setup

    return setup


STAGES: dict[str, Callable[[], StageSetup]] = {
    "preprocessing": _preprocessing,
    "generation": _generation,
    "evaluation": _evaluation,
    "classification": _classification,
}
assert set(STAGES) == set(SERVICES), "every service in settings.SERVICES has a stage here"


def stage_setup(stage: str) -> StageSetup:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of: {', '.join(STAGES)}")
    return STAGES[stage]()


def start_service(
    stage: str,
    settings: ServiceSettings | None = None,
    store: ObjectStore | None = None,
    extra_setup: StageSetup | None = None,
) -> RunningService:
    """Start a stage's server (in this process, on the settings' port; port 0 picks a free one)."""
    return server.start_server(stage, stage_setup(stage), settings, store, extra_setup)


def serve(stage: str) -> None:
    """Run a stage's server in the foreground until SIGTERM/SIGINT."""
    server.serve(stage, stage_setup(stage))
