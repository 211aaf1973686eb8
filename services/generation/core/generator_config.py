"""The config side of the generator contract: the base of every generator config (the project's ``ConfigBase``)
and the config document that travels beside a generator's weights (``save_pretrained``, checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skingenbench.services.core.config import ConfigBase, invalid_field
from skingenbench.services.core.errors import InvalidArgument

# The config document written beside exported weights and checkpoints (``GeneratorBackend.config_json``).
CONFIG_FILE = "skingenbench_config.json"


class GeneratorConfig(ConfigBase):
    """What every generator config shares: the project's ``ConfigBase`` (declared ``setting``s) with numbers kept
    as written. A generator's config dict is hashed into its model's content address and stored with its
    weights, so an int given for a float field (``"train_kimg": 240``) must stay an int: converting it would
    move existing runs to new addresses."""

    coerce_int_to_float = False

    def _check_steps_or_epochs(self) -> None:
        """Exactly one of ``train_steps`` and ``train_epochs`` says how long to train (the other is 0)."""
        if (self.train_steps > 0) == (self.train_epochs > 0):
            raise invalid_field("train_steps", "give exactly one of train_steps and train_epochs (the other 0); "
                                               f"got train_steps={self.train_steps}, train_epochs={self.train_epochs}")


def read_config_document(folder: str | Path, field: str = "init_from") -> dict[str, Any] | None:
    """``{"backend", "config"}`` from a folder's ``CONFIG_FILE``; None when it has none; INVALID_ARGUMENT (naming
    ``field``, the request field that named the folder) when it is not a config document."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text())
        if isinstance(document["backend"], str) and isinstance(document["config"], dict):
            return document
    except (ValueError, KeyError, TypeError):
        pass
    raise InvalidArgument(f"{path} is not a generator config document", field=field)
