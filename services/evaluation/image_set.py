"""An image set of the evaluation: the items of a planned set, decoded on demand.

Images are decoded when asked for and only the most recent few are kept, so a large set is never
held in memory; memorization and the sample grids ask for a few images again after extraction.
"""

from __future__ import annotations

import functools
import io

import numpy as np
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.evaluation.feature_cache import image_set_hash
from skingenbench.services.evaluation.plan import SetSpec
from skingenbench.services.platform.manifest_io import read_item
from skingenbench.services.platform.store import ObjectStore


class ImageSet:
    def __init__(self, store: ObjectStore, spec: SetSpec, cached: int = 64) -> None:
        self.store, self.spec = store, spec
        self.image = functools.lru_cache(maxsize=cached)(self._decode)

    def __len__(self) -> int:
        return len(self.spec.items)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.image(index)

    def _decode(self, index: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        item = self.spec.items[index]
        try:
            with Image.open(io.BytesIO(read_item(self.store, item))) as image:
                return np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise InvalidArgument(f"{self.spec.name}: cannot decode {item.key}: {exc}") from None

    @property
    def ids(self) -> list[str]:
        return [item.image_id or item.key for item in self.spec.items]

    def content_hash(self) -> str:
        return image_set_hash((item.key, item.sha256) for item in self.spec.items)

