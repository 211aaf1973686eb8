"""Pix2Pix's networks (Isola et al. 2017) as DermGAN uses them: a U-Net generator, a PatchGAN critic.

Generator: the Pix2Pix U-Net (encoder C64-C128-C256-C512-C512-... of 4x4 stride-2 convolutions down to
1x1 at 256 px, skip connections between mirrored levels), with each decoder step an upsample (nearest,
x2) followed by a 3x3 convolution instead of a transposed convolution. DermGAN made that change because
transposed convolutions with a kernel not divisible by the stride overlap unevenly and print
checkerboard artifacts (Odena, Dumoulin & Olah 2016, "Deconvolution and Checkerboard Artifacts").

Noise: Pix2Pix found a noise input alone is ignored by the generator and kept dropout (p = 0.5 in the
three innermost decoder blocks) switched on at test time. Both are here: the semantic map's noise
channel and dropout at sampling. Dropout masks are drawn from explicit ``torch.Generator`` objects,
never from the global RNG: one generator for a training batch (its state is in the checkpoint, so a
resumed run drops the same units), or one per image when sampling, so an image depends on its seed
alone and not on its batch.

Normalisation is instance norm: Pix2Pix's batch norm at batch size 1 is instance norm, and per-image
statistics keep an image independent of the others in its batch at any batch size. The innermost
block has none (a 1x1 map has no spatial statistics).

Discriminator: the 70x70 PatchGAN (C64-C128-C256-C512, then a 1-channel convolution) on the channel
concatenation of (semantic map, image): one real/fake logit per overlapping patch, so it judges local
texture while the L1 term keeps the low frequencies right.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

DropoutNoise = torch.Generator | Sequence[torch.Generator] | None


def seeded_dropout(x: torch.Tensor, p: float, noise: DropoutNoise) -> torch.Tensor:
    """Inverted dropout with masks from ``noise``: one generator for the batch, one per image, or none."""
    if noise is None or p == 0.0:
        return x
    if isinstance(noise, torch.Generator):
        uniform = torch.rand(x.shape, generator=noise, device=noise.device)
    else:
        if len(noise) != x.shape[0]:
            raise ValueError(f"{len(noise)} dropout generators for a batch of {x.shape[0]}")
        uniform = torch.stack([torch.rand(x.shape[1:], generator=g, device=g.device) for g in noise])
    keep = (uniform >= p).to(device=x.device, dtype=x.dtype)
    return x * keep / (1.0 - p)


def _norm(channels: int, enabled: bool) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True) if enabled else nn.Identity()


class DownBlock(nn.Module):
    """4x4 stride-2 convolution, instance norm, LeakyReLU(0.2): halves the side."""

    def __init__(self, in_channels: int, out_channels: int, norm: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1, bias=not norm)
        self.norm = _norm(out_channels, norm)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class UpBlock(nn.Module):
    """Nearest x2 upsample, 3x3 convolution, instance norm, optional seeded dropout, ReLU: doubles the side."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = nn.InstanceNorm2d(out_channels, affine=True)
        self.dropout = dropout
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, noise: DropoutNoise = None) -> torch.Tensor:
        return self.act(seeded_dropout(self.norm(self.conv(self.up(x))), self.dropout, noise))


def level_widths(base: int, maximum: int, levels: int) -> list[int]:
    """Pix2Pix's channel plan: doubling from ``base`` per level, capped at ``maximum``."""
    return [min(base * 2**level, maximum) for level in range(levels)]


class UNetGenerator(nn.Module):
    """Semantic map [N, C, R, R] -> image [N, 3, R, R] in [-1, 1]; ``levels`` halvings (R / 2**levels >= 1)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 3,
        base_width: int = 64,
        max_width: int = 512,
        levels: int = 8,
        dropout: float = 0.5,
        dropout_blocks: int = 3,
    ) -> None:
        super().__init__()
        widths = level_widths(base_width, max_width, levels)
        self.down = nn.ModuleList(
            DownBlock(
                in_channels if level == 0 else widths[level - 1], widths[level], norm=0 < level < levels - 1
            )
            for level in range(levels)
        )
        # Decoder block j (j = levels-1 .. 1) brings level j back to level j-1; the innermost has no skip.
        self.up = nn.ModuleList(
            UpBlock(
                widths[j] * (1 if j == levels - 1 else 2),
                widths[j - 1],
                dropout if levels - 1 - j < dropout_blocks else 0.0,
            )
            for j in range(levels - 1, 0, -1)
        )
        self.head = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(widths[0] * 2, out_channels, 3, padding=1),
            nn.Tanh(),
        )

    def forward(self, semantic_map: torch.Tensor, noise: DropoutNoise = None) -> torch.Tensor:
        skips = []
        x = semantic_map
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            x = torch.cat([block(x, noise), skips.pop()], dim=1)
        return self.head(x)


class PatchDiscriminator(nn.Module):
    """(map, image) pairs [N, C, R, R] -> one logit per patch [N, 1, P, P].

    ``layers`` stride-2 convolutions then two stride-1 ones; layers = 3 is Pix2Pix's 70x70 PatchGAN
    (30x30 patches at 256 px). The side R / 2**layers must be at least 3.
    """

    def __init__(self, in_channels: int, base_width: int = 64, layers: int = 3) -> None:
        super().__init__()
        widths = [min(base_width * 2**n, base_width * 8) for n in range(layers + 1)]
        blocks: list[nn.Module] = [DownBlock(in_channels, widths[0], norm=False)]
        blocks += [DownBlock(widths[n - 1], widths[n]) for n in range(1, layers)]
        blocks += [
            nn.Conv2d(widths[layers - 1], widths[layers], 4, stride=1, padding=1, bias=False),
            nn.InstanceNorm2d(widths[layers], affine=True),
            nn.LeakyReLU(0.2),
            nn.Conv2d(widths[layers], 1, 4, stride=1, padding=1),
        ]
        self.net = nn.Sequential(*blocks)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.net(pairs)


def init_pix2pix_weights(module: nn.Module) -> None:
    """Pix2Pix's initialisation: convolution weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.InstanceNorm2d) and layer.affine:
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)
