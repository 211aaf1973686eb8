"""The StyleGAN2 residual discriminator with minibatch standard deviation and class projection.

StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", §4.1, Fig. 7c)
found the residual discriminator best: fromRGB once at full resolution, then per resolution two 3x3
convolutions (the second downsampling) beside a 1x1 downsampling skip, summed and scaled by 1/sqrt(2).
Downsampling blurs with the [1, 3, 3, 1] filter before the stride-2 convolution. At 4x4 the epilogue
appends the minibatch standard deviation feature (ProGAN, Karras et al. 2018, §3: group size 4, one
channel), then a 3x3 conv and two fully connected layers.

A conditional discriminator scores with the projection of Miyato & Koyama 2018 ("cGANs with Projection
Discriminator"): the last layer emits a vector that is dotted with an embedding of the class, as the
conditional models of StyleGAN2-ADA (Karras et al. 2020, "Training GANs with Limited Data") do.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from skingenbench.services.generation.core.stylegan2.mapping import (
    EqualizedLinear,
    MappingNetwork,
    leaky_relu_gained,
)
from skingenbench.services.generation.core.stylegan2.synthesis import channels_at, fir_resample
from torch import nn


class EqualizedConv2d(nn.Module):
    """A conv with the equalised learning rate; ``down=True`` blurs then convolves with stride 2."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        bias: bool = True,
        activation: str = "lrelu",
        down: bool = False,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size, self.activation, self.down, self.conv_clamp = (
            kernel_size,
            activation,
            down,
            conv_clamp,
        )
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        weight = (self.weight * self.weight_gain).to(x.dtype)
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        if self.down and self.kernel_size == 1:
            # Blur-and-decimate, then the 1x1 projection (the residual skip).
            x = F.conv2d(fir_resample(x, down=2, pad=(1, 1)), weight, bias)
        elif self.down:
            # Pad 2 + blur + 3x3 stride 2: output pixel j covers input pixels 2j and 2j+1.
            x = F.conv2d(fir_resample(x, pad=(2, 2)), weight, bias, stride=2)
        else:
            x = F.conv2d(x, weight, bias, padding=self.kernel_size // 2)
        if self.activation == "lrelu":
            x = leaky_relu_gained(x)
        x = x * gain if gain != 1.0 else x
        return x.clamp(-self.conv_clamp, self.conv_clamp) if self.conv_clamp else x


class DiscriminatorBlock(nn.Module):
    """Residual block at one resolution: x -> (conv3x3, conv3x3 down) + skip 1x1 down, each x 1/sqrt(2)."""

    def __init__(
        self, in_channels: int, out_channels: int, *, from_rgb: bool, conv_clamp: float | None
    ) -> None:
        super().__init__()
        self.fromrgb = EqualizedConv2d(3, in_channels, 1, conv_clamp=conv_clamp) if from_rgb else None
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3, conv_clamp=conv_clamp)
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3, down=True, conv_clamp=conv_clamp)
        self.skip = EqualizedConv2d(in_channels, out_channels, 1, bias=False, activation="linear", down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fromrgb is not None:
            x = self.fromrgb(x)
        skip = self.skip(x, gain=math.sqrt(0.5))
        return skip + self.conv1(self.conv0(x), gain=math.sqrt(0.5))


def minibatch_stddev(x: torch.Tensor, group_size: int, num_channels: int = 1) -> torch.Tensor:
    """Append the standard deviation of each feature over a group of samples, averaged (ProGAN §3).

    It lets the discriminator see a lack of variety in a batch. The group is the largest divisor of the
    batch that is <= group_size, so any batch size works.
    """
    batch, channels, height, width = x.shape
    group = max(g for g in range(1, min(group_size, batch) + 1) if batch % g == 0)
    y = x.float().reshape(group, batch // group, num_channels, channels // num_channels, height, width)
    y = (y - y.mean(dim=0)).square().mean(dim=0)  # variance over the group
    y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [batch/group, num_channels]
    y = y.reshape(-1, num_channels, 1, 1).repeat(group, 1, height, width)
    return torch.cat([x, y.to(x.dtype)], dim=1)


class Discriminator(nn.Module):
    """images [N, 3, R, R] (+ labels [N]) -> logits [N, 1]."""

    def __init__(
        self,
        *,
        resolution: int,
        channel_base: int,
        channel_max: int,
        num_classes: int = 0,
        mbstd_group_size: int = 4,
        mbstd_channels: int = 1,
        mapping_layers: int = 8,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        log2 = int(math.log2(resolution))
        if resolution < 4 or 2**log2 != resolution:
            raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
        self.resolution, self.num_classes = resolution, num_classes
        self.mbstd_group_size, self.mbstd_channels = mbstd_group_size, mbstd_channels
        resolutions = [2**i for i in range(log2, 2, -1)]  # R, R/2, ..., 8
        self.blocks = nn.ModuleList(
            [
                DiscriminatorBlock(
                    channels_at(r, channel_base, channel_max),
                    channels_at(r // 2, channel_base, channel_max),
                    from_rgb=index == 0,
                    conv_clamp=conv_clamp,
                )
                for index, r in enumerate(resolutions)
            ]
        )
        channels = channels_at(4, channel_base, channel_max)
        self.fromrgb4 = EqualizedConv2d(3, channels, 1, conv_clamp=conv_clamp) if resolution == 4 else None
        self.conv = EqualizedConv2d(channels + mbstd_channels, channels, 3, conv_clamp=conv_clamp)
        self.fc = EqualizedLinear(channels * 16, channels, activation="lrelu")
        self.cmap_dim = channels if num_classes > 0 else 0
        self.out = EqualizedLinear(channels, self.cmap_dim or 1)
        # The class embedding for the projection: a label-only mapping network into the output space.
        self.class_mapping = (
            MappingNetwork(0, self.cmap_dim, num_classes, mapping_layers) if num_classes > 0 else None
        )

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = images
        if self.fromrgb4 is not None:
            x = self.fromrgb4(x)
        for block in self.blocks:
            x = block(x)
        x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_channels)
        x = self.conv(x)
        x = self.fc(x.float().flatten(1))
        x = self.out(x)
        if self.class_mapping is not None:
            if labels is None:
                raise ValueError(
                    f"this discriminator is conditional on {self.num_classes} classes: give labels"
                )
            cmap = self.class_mapping(None, labels)
            x = (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
        return x.float()
