"""The config side of the generator contract: the base of every generator config (the project's ``ConfigBase``)
and the config document that travels beside a generator's weights (``save_pretrained``, checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypedDict

from skingenbench.services.core.config import ConfigBase, invalid_field
from skingenbench.services.core.errors import InvalidArgument

# A JSON value as ``json.loads`` returns it: config dicts, config documents and checkpoint headers are JSON, and
# each reader checks the shape it needs (``ConfigBase.from_dict`` refuses unknown keys and wrong types).
JSONValue = str | int | float | bool | list["JSONValue"] | dict[str, "JSONValue"] | None
JSONObject = dict[str, JSONValue]

# The config document written beside exported weights and checkpoints (``GeneratorBackend.config_json``).
CONFIG_FILE = "skingenbench_config.json"


class GeneratorConfig(ConfigBase):
    """What every generator config shares: the project's ``ConfigBase`` (declared ``setting``s) with numbers kept
    as written. A generator's config dict is hashed into its model's content address and stored with its
    weights, so an int given for a float field (``"train_kimg": 240``) must stay an int: converting it would
    move existing runs to new addresses."""

    coerce_int_to_float = False

    # Fields every generator config declares (the generic training loop and the backend base read them). They are
    # annotations only: each config's own ``setting`` makes the dataclass field, with its default and limits.
    resolution: int
    batch_size: int


class StepsOrEpochsConfig(GeneratorConfig):
    """A generator config whose training length is ``train_steps`` or ``train_epochs`` full passes (DDPM, DermGAN;
    StyleGAN2-ADA counts thousands of images instead). Annotations only, as in ``GeneratorConfig``."""

    train_steps: int
    train_epochs: int

    def _check_steps_or_epochs(self) -> None:
        """Exactly one of ``train_steps`` and ``train_epochs`` says how long to train (the other is 0)."""
        if (self.train_steps > 0) == (self.train_epochs > 0):
            raise invalid_field(
                "train_steps",
                "give exactly one of train_steps and train_epochs (the other 0); "
                f"got train_steps={self.train_steps}, train_epochs={self.train_epochs}",
            )


class ConfigDocument(TypedDict):
    """``CONFIG_FILE``'s content: the registry name of the backend and its full config dict."""

    backend: str
    config: JSONObject


def read_config_document(folder: str | Path, field: str = "init_from") -> ConfigDocument | None:
    """``{"backend", "config"}`` from a folder's ``CONFIG_FILE``; None when it has none; INVALID_ARGUMENT (naming
    ``field``, the request field that named the folder) when it is not a config document."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text())
        backend, config = document["backend"], document["config"]
        if isinstance(backend, str) and isinstance(config, dict):
            return ConfigDocument(backend=backend, config=config)
    except (ValueError, KeyError, TypeError):
        pass
    raise InvalidArgument(f"{path} is not a generator config document", field=field)
