"""The mapping network z (+ class) -> w, the tracked mean w and the truncation trick.

StyleGAN (Karras et al. 2019, "A Style-Based Generator Architecture for GANs", §2) maps a normalised
latent z through an MLP to an intermediate latent w that drives every layer's style; StyleGAN2 (Karras
et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN") keeps it. The FFHQ configuration
uses 8 layers; the ``auto`` configuration of StyleGAN2-ADA (Karras et al. 2020, "Training Generative
Adversarial Networks with Limited Data", appendix) — the one the reference study ran — uses 2.

Class conditioning embeds the one-hot label into w-space and concatenates it to z before the MLP, as the
ADA paper's conditional models do. The same module without z (``z_dim=0``) maps a label alone, which the
projection discriminator uses for its class embedding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
# Leaky ReLU gain that keeps unit variance through the layer (He et al. 2015), as in ProGAN/StyleGAN.
LRELU_GAIN = math.sqrt(2.0)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit root-mean-square (StyleGAN's "pixel norm" of the input latent)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def leaky_relu_gained(x: torch.Tensor, clamp: float | None = None) -> torch.Tensor:
    """Leaky ReLU times sqrt(2), optionally clamped (the ADA code's ``conv_clamp`` guard for fp16/bf16)."""
    x = F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN
    return x.clamp(-clamp, clamp) if clamp else x


class EqualizedLinear(nn.Module):
    """A fully connected layer with the equalised learning rate of ProGAN (Karras et al. 2018, §4.1).

    Weights are stored as N(0, 1) / lr_multiplier and scaled by lr_multiplier / sqrt(fan_in) at run time,
    so Adam's per-parameter step sizes are the same for every layer; ``lr_multiplier`` 0.01 slows the
    mapping network down by 100x as in StyleGAN.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
        activation: str = "linear",
    ) -> None:
        super().__init__()
        if activation not in ("linear", "lrelu"):
            raise ValueError(f"activation must be linear or lrelu, got {activation!r}")
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], bias_init / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.weight_gain
        bias = self.bias * self.bias_gain if self.bias is not None else None
        x = F.linear(x, weight, bias)
        return leaky_relu_gained(x) if self.activation == "lrelu" else x

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, activation={self.activation}"


class MappingNetwork(nn.Module):
    """z [N, z_dim] (+ labels [N]) -> w [N, w_dim]; tracks the mean w for truncation."""

    w_avg: torch.Tensor  # a buffer (register_buffer below), typed for the checker

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        num_classes: int = 0,
        num_layers: int = 8,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        if z_dim <= 0 and num_classes <= 0:
            raise ValueError("a mapping network needs a latent (z_dim > 0), classes, or both")
        self.z_dim, self.w_dim, self.num_classes, self.w_avg_beta = z_dim, w_dim, num_classes, w_avg_beta
        # One-hot labels through an (equalised) linear layer: a learned class embedding in w-space.
        self.embed = EqualizedLinear(num_classes, w_dim) if num_classes > 0 else None
        features = [z_dim + (w_dim if num_classes > 0 else 0)] + [w_dim] * num_layers
        self.layers = nn.Sequential(
            *[
                EqualizedLinear(features[i], features[i + 1], lr_multiplier=lr_multiplier, activation="lrelu")
                for i in range(num_layers)
            ]
        )
        # The running mean of w (StyleGAN §B, "truncation trick in W"): the centre truncation pulls toward.
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self, z: torch.Tensor | None, labels: torch.Tensor | None = None, *, update_w_avg: bool = False
    ) -> torch.Tensor:
        parts = []
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"z must be [N, {self.z_dim}], got {None if z is None else list(z.shape)}")
            parts.append(normalize_2nd_moment(z.float()))
        if self.embed is not None:
            if labels is None:
                raise ValueError(
                    f"this mapping network is conditional on {self.num_classes} classes: give labels"
                )
            one_hot = F.one_hot(labels.long(), self.num_classes).to(torch.float32)
            parts.append(normalize_2nd_moment(self.embed(one_hot)))
        w = self.layers(torch.cat(parts, dim=1))
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        return w

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        """w_avg + psi (w - w_avg): psi 1 is no truncation, 0 collapses every latent to the mean image."""
        if psi == 1.0:
            return w
        return self.w_avg.to(w.dtype).lerp(w, psi)
