"""StyleGAN2 losses: non-saturating logistic loss, lazy R1 and lazy path-length regularisation.

- The non-saturating logistic loss (Goodfellow et al. 2014, §3), which StyleGAN and StyleGAN2 use:
  D minimises softplus(D(fake)) + softplus(-D(real)); G minimises softplus(-D(fake)).
- R1 (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?"): gamma / 2 times the
  squared norm of D's gradient at real images, penalising only on the data manifold.
- Path-length regularisation (StyleGAN2 §3.2, eq. 4): E[(||J_w^T y|| - a)^2] with y random images and
  a the running mean of the lengths, which makes a fixed-size step in w change the image by a fixed amount.
- Lazy regularisation (StyleGAN2 §3.1): the regularisers run every k minibatches (R1 every 16, path length
  every 4) with their weight multiplied by k, which costs little quality and saves much compute.

The weights and intervals are the backend's configuration; these are the pure functions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss, softplus(-D(G(z))), averaged."""
    return F.softplus(-fake_logits.float()).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic discriminator loss, softplus(D(fake)) + softplus(-D(real)), averaged over each batch."""
    return F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """Per-image ||grad_x D(x)||^2 at the real images [N] (the caller weighs it by gamma / 2).

    ``real_images`` must require grad and ``real_logits`` be computed from them (through the augmentation,
    so the penalty is measured with respect to the clean reals, as in ADA). The graph is kept so the
    penalty can itself be backpropagated. A discriminator that ignores its input has zero penalty.
    """
    (gradients,) = torch.autograd.grad(
        real_logits.float().sum(), real_images, create_graph=True, allow_unused=True
    )
    if gradients is None:
        return torch.zeros(real_images.shape[0], device=real_images.device)
    return gradients.float().square().sum(dim=[1, 2, 3])


class PathLengthRegularizer:
    """Path-length penalty with its running mean of lengths (StyleGAN2 §3.2).

    y ~ N(0, I) / R, so ||J^T y|| does not grow with the resolution R; J^T y is taken per layer style and the
    squared norms are averaged over layers, which is what the reference configuration's weight 2 is tuned for.
    The target a is an exponential moving average of the lengths (decay 0.01), held here and checkpointed.
    """

    def __init__(self, decay: float = 0.01, device: torch.device | str = "cpu") -> None:
        self.decay = decay
        self.mean = torch.zeros([], device=device)

    def __call__(
        self,
        images: torch.Tensor,
        ws: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Per-image penalty (||J^T y|| - a)^2 [N] for ``images`` synthesised from ``ws``; updates a."""
        height, width = images.shape[2:]
        y = torch.randn(images.shape, generator=generator, device=images.device) / math.sqrt(height * width)
        (gradients,) = torch.autograd.grad((images.float() * y).sum(), ws, create_graph=True)
        lengths = gradients.float().square().sum(dim=2).mean(dim=1).sqrt()
        with torch.no_grad():
            self.mean = self.mean.lerp(lengths.mean().detach(), self.decay)
        return (lengths - self.mean).square()
