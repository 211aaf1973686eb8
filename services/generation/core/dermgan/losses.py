"""DermGAN's objective: Pix2Pix's conditional GAN loss plus an L1 term that counts the lesion more.

Pix2Pix (Isola et al. 2017): G* = arg min_G max_D L_cGAN(G, D) + lambda * L_L1(G), with the
discriminator seeing (condition, image) pairs, lambda = 100, and D's loss halved "to slow down the rate
at which D learns relative to G". The generator's adversarial term is the non-saturating
-log D(x, G(x)). ``lsgan`` (least squares, Mao et al. 2017) is offered as the more stable alternative
the pytorch-CycleGAN-and-pix2pix code also provides.

DermGAN (Ghorbani et al. 2019) adds a lesion-specific reconstruction term: the lesion is a small part
of the image but the part that matters, so its pixels weigh ``lesion_weight`` times the skin's in
the L1 term. The mean is over pixels (not over weights), so a unit error inside the lesion costs
exactly ``lesion_weight`` times one outside, and ``lesion_weight = 1`` is Pix2Pix's plain L1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_MODES = ("vanilla", "lsgan")


def adversarial_loss(logits: torch.Tensor, target_is_real: bool, mode: str = "vanilla") -> torch.Tensor:
    """Mean over patches of the GAN loss for every patch's logit against one target."""
    target = torch.full_like(logits, 1.0 if target_is_real else 0.0)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    raise ValueError(f"unknown GAN loss {mode!r}; use one of {GAN_MODES}")


def discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, mode: str = "vanilla"
) -> torch.Tensor:
    """Pix2Pix's halved discriminator objective: 0.5 * (loss(real, 1) + loss(fake, 0))."""
    return 0.5 * (adversarial_loss(real_logits, True, mode) + adversarial_loss(fake_logits, False, mode))


def lesion_weights(lesion_mask: torch.Tensor, lesion_weight: float) -> torch.Tensor:
    """Per-pixel weights [N, 1, H, W]: ``lesion_weight`` inside the lesion, 1 on skin (soft masks blend)."""
    if lesion_mask.ndim == 3:
        lesion_mask = lesion_mask[:, None]
    return 1.0 + (lesion_weight - 1.0) * lesion_mask.clamp(0.0, 1.0)


def lesion_weighted_l1(
    fake: torch.Tensor, real: torch.Tensor, lesion_mask: torch.Tensor, lesion_weight: float
) -> torch.Tensor:
    """Mean over pixels and channels of weight * |fake - real|."""
    return (lesion_weights(lesion_mask, lesion_weight) * (fake - real).abs()).mean()


def generator_loss(
    fake_logits: torch.Tensor,
    fake: torch.Tensor,
    real: torch.Tensor,
    lesion_mask: torch.Tensor,
    lambda_l1: float,
    lesion_weight: float,
    mode: str = "vanilla",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(total, parts): adversarial term + lambda_l1 * lesion-weighted L1; parts are detached for logging."""
    gan = adversarial_loss(fake_logits, True, mode)
    l1 = lesion_weighted_l1(fake, real, lesion_mask, lesion_weight)
    return gan + lambda_l1 * l1, {"loss_g_gan": gan.detach(), "loss_l1": l1.detach()}
