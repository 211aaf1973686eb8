"""StyleGAN2-ADA in plain PyTorch, written from the papers (Karras et al. 2020, "Analyzing and Improving the
Image Quality of StyleGAN"; Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data").

One concept per module: ``mapping`` (z -> w, truncation), ``synthesis`` (modulated convolutions, noise,
skip toRGB; the ``Generator``), ``discriminator`` (residual, minibatch stddev, projection), ``augment``
(the differentiable ``bgc`` pipeline and the adaptive-p controller), ``losses`` (logistic loss, R1, path
length) and ``backend`` (the ``GeneratorBackend``: training phases, EMA, checkpoints, seeded sampling).
"""

from __future__ import annotations

from skingenbench.services.generation.core.stylegan2.augment import AdaptiveAugment, AugmentPipe
from skingenbench.services.generation.core.stylegan2.backend import (
           PROFILES,
           SAMPLERS,
           StyleGAN2ADABackend,
           StyleGAN2Config,
)
from skingenbench.services.generation.core.stylegan2.discriminator import Discriminator
from skingenbench.services.generation.core.stylegan2.mapping import MappingNetwork
from skingenbench.services.generation.core.stylegan2.synthesis import (
           Generator,
           ModulatedConv2d,
           SynthesisNetwork,
)

__all__ = ["PROFILES", "SAMPLERS", "AdaptiveAugment", "AugmentPipe", "Discriminator", "Generator",
           "MappingNetwork", "ModulatedConv2d", "StyleGAN2ADABackend", "StyleGAN2Config", "SynthesisNetwork"]
