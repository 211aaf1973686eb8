"""Procedural phantom dermoscopy: skin of a chosen tone, a lesion whose look depends on its class, and
artifacts (hair, ruler marks, ink, dark vignette corners, bubbles), each with its mask.

A phantom is ground truth that real data cannot give: the artifact-free image (``clean``) lies beside
the image with artifacts, and every artifact's mask covers exactly the pixels it changed. It is the
platform's demo data and the yardstick for hair and ruler removal.

The class looks encode the dermoscopy literature, each feature cited where it is drawn. The aim is a
data set that is *learnable from structure*: base colours are drawn from overlapping ranges and the
colours of the characteristic structures (red vessels, white keratin or cysts, blue-grey areas, dark
dots) appear in more than one class, so mean colour or a colour histogram separates the classes far
worse than shape (asymmetry, border), texture (networks, fissures) and arrangement (branching vessels,
central scale) do.

All randomness comes from the ``numpy.random.Generator`` passed in: the same seed gives bit-identical
images. Drawing uses OpenCV and vectorised numpy only (no per-pixel Python loops), so a 256x256
phantom takes a few milliseconds.

The package holds one concept per module: ``config`` (what a phantom is drawn from), ``skin``,
``contour`` and ``canvas`` (the lesion's border and drawing surface), ``palette`` and ``looks`` (the
class looks), ``lesion`` (drawing one lesion and placing it), ``artifacts``, ``render``, and ``raster``
(the noise and ramp helpers they share).
"""

from skingenbench.services.data.core.phantom.artifacts import ARTIFACTS_IN_DRAWING_ORDER, ArtifactDrawer
from skingenbench.services.data.core.phantom.config import (
    ARTIFACTS,
    REFERENCE_SHORT_SIDE,
    LesionParams,
    PhantomConfig,
    SkinParams,
)
from skingenbench.services.data.core.phantom.lesion import sample_lesion_params
from skingenbench.services.data.core.phantom.render import PhantomSample, render_phantom
from skingenbench.services.data.core.phantom.skin import sample_skin

__all__ = [
    "ARTIFACTS",
    "ARTIFACTS_IN_DRAWING_ORDER",
    "REFERENCE_SHORT_SIDE",
    "ArtifactDrawer",
    "LesionParams",
    "PhantomConfig",
    "PhantomSample",
    "SkinParams",
    "render_phantom",
    "sample_lesion_params",
    "sample_skin",
]
