"""Class labels of a generator run: how many classes a network is conditioned on, and whether a run's
classes fit its config and its initialisation.

A request's ``classes`` are sorted and that order is the model's class order (``ModelRecord.classes``):
a training item's label reaches a class-conditional backend as its index in that list.
"""

from __future__ import annotations

from typing import Any

from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.generation import models


def class_count(config: Any) -> int:
    """How many classes a config's network is conditioned on by class index (0: not class-conditional).

    StyleGAN2-ADA's ``num_classes``. DermGAN conditions on semantic maps (``backend.conditional``), not on a
    class index, and DDPM is unconditional: both have no ``num_classes`` and count 0 here.
    """
    return int(getattr(config, "num_classes", 0) or 0)


def check_class_count(generator: str, config: Any, classes: list[str]) -> None:
    """A class-conditional config must have exactly one class per requested class.

    The network's class i is ``classes[i]`` (sorted); with more outputs than classes some embeddings would never
    see an image, with fewer the labels would not fit. ``num_classes`` is not filled in from ``classes``: it is
    part of the config that defines the weights (and the model's address), so it says what the user wrote, and
    0 with several classes stays a legitimate choice (one unconditional model over their union).
    """
    wanted = class_count(config)
    if wanted and wanted != len(classes):
        raise InvalidArgument(
            f"{generator} config has num_classes={wanted}, but the request trains on {len(classes)} class(es) "
            f"({', '.join(classes)}); a class-conditional model needs exactly one class per requested class",
            field="config_json",
            hint=f'set "num_classes": {len(classes)} (class index i = the i-th of {", ".join(classes)}, '
            'sorted) and/or list the classes in "classes"; or "num_classes": 0 for one unconditional '
            "model over their union",
        )


def check_init_classes(uri: str, record: models.ModelRecord, config: Any, classes: list[str]) -> None:
    """A class-conditional run may start only from a class-conditional model of the same classes.

    Class embeddings are indexed by position in the sorted classes (G's embedding, D's projection), so the weights
    of a model trained on other classes load without complaint when the count matches and then mean other classes:
    with MEL, NV as classes 0, 1, a run on BCC, MEL would start with BCC drawn by MEL's embedding. When either side
    is unconditional (``num_classes`` 0) there is no class order to confuse and this check has nothing to say
    (whether the weights fit is the backend's ``init_from`` check).

    INVALID_ARGUMENT, not FAILED_PRECONDITION: a trained model's classes never change (its record is
    content-addressed and complete), so no later state of the system makes this request valid; only changing
    ``classes`` or ``init_checkpoint`` does. It is the same kind of mismatch as ``check_class_count``'s
    ``num_classes`` against ``classes``, which is answered the same way. (FAILED_PRECONDITION above is for an
    init model still training: waiting does fix that.)
    """
    init_classes = list(record.classes)
    if (
        not class_count(config)
        or not int(record.config.get("num_classes", 0) or 0)
        or init_classes == classes
    ):
        return
    raise InvalidArgument(
        f"init_checkpoint {uri} is a class-conditional model of classes {', '.join(init_classes)}, but this run "
        f"trains the classes {', '.join(classes)}; its class embeddings are indexed by the sorted classes, so "
        "they would start out meaning other classes",
        field="init_checkpoint",
        hint=f"train on the init model's classes ({', '.join(init_classes)}), or leave init_checkpoint empty",
    )
