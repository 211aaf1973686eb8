"""StyleGAN2-ADA in plain PyTorch, written from the papers (Karras et al. 2020, "Analyzing and Improving the
Image Quality of StyleGAN"; Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data").

One concept per module: ``config`` (the declared config, profiles and model/training fields), ``mapping`` (z -> w, truncation), ``synthesis`` (modulated convolutions, noise,
skip toRGB; the ``Generator``), ``discriminator`` (residual, minibatch stddev, projection), ``augment``
(the differentiable ``bgc`` pipeline and the adaptive-p controller), ``losses`` (logistic loss, R1, path
length) and ``backend`` (the ``GeneratorBackend``: training phases, EMA, checkpoints, seeded sampling).
"""

from __future__ import annotations

from skingenbench.services.generation.core.stylegan2.augment import AdaptiveAugment, AugmentPipe
from skingenbench.services.generation.core.stylegan2.backend import StyleGAN2ADABackend
from skingenbench.services.generation.core.stylegan2.config import (
    PAPER,
    PROFILES,
    SAMPLERS,
    TINY,
    StyleGAN2Config,
)
from skingenbench.services.generation.core.stylegan2.discriminator import Discriminator
from skingenbench.services.generation.core.stylegan2.mapping import MappingNetwork
from skingenbench.services.generation.core.stylegan2.synthesis import (
    Generator,
    ModulatedConv2d,
    SynthesisNetwork,
)

__all__ = [
    "PAPER",
    "PROFILES",
    "SAMPLERS",
    "TINY",
    "AdaptiveAugment",
    "AugmentPipe",
    "Discriminator",
    "Generator",
    "MappingNetwork",
    "ModulatedConv2d",
    "StyleGAN2ADABackend",
    "StyleGAN2Config",
    "SynthesisNetwork",
]
