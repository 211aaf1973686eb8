"""Transfer learning: the model or folder a training run starts from, checked at Start and exported for
the backend's ``init_from`` when the job runs."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.generation import models
from skingenbench.services.generation.class_labels import check_init_classes
from skingenbench.services.generation.core.backend import GeneratorBackend
from skingenbench.services.platform import readable
from skingenbench.services.platform.job_kind import ObjectRef
from skingenbench.services.platform.store import ObjectStore

if TYPE_CHECKING:
    from skingenbench.services.generation.training_job import TrainingPlan


def _local_folder(store: ObjectStore, uri: str) -> tuple[Path | None, str]:
    """(a folder on this machine under a read root, or None; the store reference of a trained model).

    The one read rule (``platform.readable``): a path outside the store and the read roots is refused
    before anything is looked up, the same way whether it exists.
    """
    source = readable.resolve(
        store, uri.rstrip("/") or uri, "init_checkpoint"
    )  # a model's prefix may end in /
    return source.path, source.key


def check_init(
    store: ObjectStore, init: dict[str, str], backend: GeneratorBackend, generator: str, classes: list[str]
) -> tuple[ObjectRef | None, str]:
    """The initialisation exists and fits the new run: same generator, same class order for a class-conditional
    run, network-shaping fields equal. Returns (the init model pinned, or None; the local folder, or "").

    A local folder carries weights and a config but no class names (``save_pretrained`` exports indices only): its
    config is checked here when it has ours, and a foreign export (a diffusers UNet) when the backend loads it.
    """
    folder, reference = _local_folder(store, init["uri"])
    if folder is not None:
        if not folder.is_dir():
            raise InvalidArgument(
                f"init_checkpoint {init['uri']} is not a folder on the generation server",
                field="init_checkpoint",
                hint="a diffusers UNet folder, or a trained model's URI",
            )
        backend.check_pretrained_folder(
            folder
        )  # a folder of ours names its config; a foreign one is checked on load
        return None, str(folder)
    record = models.read_record(store, reference, init.get("sha256", ""))
    if not record.complete:
        raise FailedPrecondition(f"init_checkpoint {init['uri']} is a model that has not finished training")
    if record.generator != generator:
        raise InvalidArgument(
            f"init_checkpoint {init['uri']} is a {record.generator} model; this run trains {generator}",
            field="init_checkpoint",
            hint=f"start from a {generator} model",
        )
    check_init_classes(init["uri"], record, backend.config, classes)
    # The backend's declared ``model_fields`` (network shape, diffusion process): weights made under other values
    # do not fit, so the request is refused now rather than failing the job when it loads them.
    backend.check_init_config(record.config)
    return ObjectRef(store.uri(record.key), record.sha256), ""


@contextlib.contextmanager
def init_folder(store: ObjectStore, plan: TrainingPlan) -> Iterator[str | None]:
    """The local folder to initialise from: given, or the pinned trained model exported to one."""
    if plan.init_model is None:
        # A folder pinned at Start is checked against the read rule again: a resumed job may run under
        # other settings than the ones that accepted it.
        yield str(readable.local_path(plan.init_folder, "init_checkpoint")) if plan.init_folder else None
        return
    record = models.read_record(store, plan.init_model.uri, plan.init_model.sha256)
    backend = models.load_sampling_backend(store, record)
    with tempfile.TemporaryDirectory(prefix="sgb-init-") as tmp:
        backend.save_pretrained(tmp)
        yield tmp
