"""The StyleGAN2 synthesis network and the generator (mapping + style mixing + truncation + synthesis).

Following Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN" (StyleGAN2):

- a learned constant 4x4 input; per resolution two 3x3 convolutions whose weights are *modulated* by a
  style (an affine map of w) and *demodulated* so that outputs return to unit variance (§2.2, eq. 1-3),
  which replaces AdaIN and removes its droplet artifacts;
- per-layer noise inputs scaled by a learned strength, added after the convolution (§2.1, Fig. 2c);
- the "skip" output architecture (§4.1, Fig. 7b): every resolution has a toRGB (a modulated 1x1 conv
  without demodulation) and the upsampled RGB image of the previous resolution is added to it;
- resampling with the [1, 3, 3, 1] binomial FIR filter (as in StyleGAN, after Zhang 2019), written here
  as plain zero-insertion + separable depthwise convolution.

Layer styles: the 4x4 block has one conv, every later block two; a block's toRGB uses the style of the next
block's first conv, so a generator at resolution R uses num_ws = 2 log2(R) - 2 styles (14 at 256).
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from skingenbench.services.generation.core.stylegan2.mapping import (
    EqualizedLinear,
    MappingNetwork,
    leaky_relu_gained,
)
from torch import nn

NOISE_MODES = ("random", "const", "none")


def binomial_filter(device: torch.device | str | None = None) -> torch.Tensor:
    """The 1-D [1, 3, 3, 1] / 8 filter; applied along both axes it is the 4x4 binomial blur."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], device=device)
    return taps / taps.sum()


def fir_resample(
    x: torch.Tensor, *, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0), gain: float = 1.0
) -> torch.Tensor:
    """Upsample by zero insertion, pad (left/top, right/bottom), blur with the separable binomial filter,
    and keep every ``down``-th sample. ``gain`` multiplies the 2-D filter (``up**2`` keeps brightness)."""
    batch, channels, height, width = x.shape
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    taps = binomial_filter(x.device).to(x.dtype) * math.sqrt(gain)
    # The filter is symmetric, so correlation (what conv2d computes) equals convolution.
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(channels, 1, 1, 4), groups=channels, stride=(1, down))
    x = F.conv2d(x, taps.view(1, 1, -1, 1).expand(channels, 1, 4, 1), groups=channels, stride=(down, 1))
    return x


def upsample_2x(x: torch.Tensor) -> torch.Tensor:
    """2x upsampling: output 2i is (x[i-1] + 3 x[i]) / 4 and 2i+1 is (3 x[i] + x[i+1]) / 4 (bilinear)."""
    return fir_resample(x, up=2, pad=(2, 1), gain=4.0)


class ModulatedConv2d(nn.Module):
    """Weight modulation and demodulation, StyleGAN2 §2.2.

    w'_ijk = s_i w_ijk (eq. 1), sigma_j = sqrt(sum_ik w'_ijk^2) (eq. 2), w''_ijk = w'_ijk / sigma_j (eq. 3).
    ``fused=False`` (the default) applies the same maths to the activations instead — scale input channel
    i by s_i, convolve with the shared weight, scale output channel j by 1/sigma_j — which the paper notes
    is equivalent and which runs as one ordinary convolution; ``fused=True`` builds per-sample weights and
    runs a grouped convolution, the paper's formulation. ``up=True`` is a stride-2 transposed convolution
    followed by the binomial blur (upsample-then-convolve in one kernel).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        w_dim: int,
        *,
        demodulate: bool = True,
        up: bool = False,
        fused: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.up, self.fused = demodulate, up, fused
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)  # styles start at 1
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)  # equalised lr

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # [N, in]
        weight = self.weight * self.weight_gain
        if self.fused:
            return self._fused(x, weight, styles)
        x = x * styles.to(x.dtype)[:, :, None, None]
        if self.up:
            x = F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), stride=2)
        else:
            x = F.conv2d(x, weight.to(x.dtype), padding=self.kernel_size // 2)
        if self.demodulate:
            # sigma_j^2 = sum_i s_i^2 sum_k w_ijk^2: one small matmul instead of per-sample weights.
            sigma_inv = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
            x = x * sigma_inv.to(x.dtype)[:, :, None, None]
        return fir_resample(x, pad=(1, 1), gain=4.0) if self.up else x

    def _fused(self, x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        per_sample = weight[None] * styles[:, None, :, None, None]  # eq. 1: [N, out, in, k, k]
        if self.demodulate:
            per_sample = per_sample * (per_sample.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
        x = x.reshape(1, batch * self.in_channels, *x.shape[2:])
        k = self.kernel_size
        if self.up:
            per_sample = per_sample.transpose(1, 2).reshape(batch * self.in_channels, self.out_channels, k, k)
            x = F.conv_transpose2d(x, per_sample.to(x.dtype), stride=2, groups=batch)
        else:
            per_sample = per_sample.reshape(batch * self.out_channels, self.in_channels, k, k)
            x = F.conv2d(x, per_sample.to(x.dtype), padding=k // 2, groups=batch)
        x = x.reshape(batch, self.out_channels, *x.shape[2:])
        return fir_resample(x, pad=(1, 1), gain=4.0) if self.up else x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv -> + noise * strength -> + bias -> leaky ReLU (StyleGAN2 Fig. 2c)."""

    noise_const: torch.Tensor  # a buffer (register_buffer below), typed for the checker

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        *,
        up: bool = False,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.resolution, self.conv_clamp = resolution, conv_clamp
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros([]))  # starts silent; training decides how much
        self.register_buffer("noise_const", torch.randn(resolution, resolution))  # for noise_mode="const"
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        x = self.conv(x, w)
        if noise is not None:
            x = x + noise.to(x.dtype) * self.noise_strength.to(x.dtype)
        return leaky_relu_gained(x + self.bias.to(x.dtype)[None, :, None, None], self.conv_clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB without demodulation (StyleGAN2 §2.2: only the convs feeding features)."""

    def __init__(self, in_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, 3, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = self.conv(x, w) + self.bias.to(x.dtype)[None, :, None, None]
        return x.clamp(-self.conv_clamp, self.conv_clamp) if self.conv_clamp else x


class SynthesisBlock(nn.Module):
    """One resolution: (constant | upsampling conv) + conv + toRGB, with the skip image path."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.first = resolution == 4
        if self.first:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
            self.layers = nn.ModuleList(
                [SynthesisLayer(out_channels, out_channels, w_dim, 4, conv_clamp=conv_clamp)]
            )
        else:
            self.layers = nn.ModuleList(
                [
                    SynthesisLayer(
                        in_channels, out_channels, w_dim, resolution, up=True, conv_clamp=conv_clamp
                    ),
                    SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp),
                ]
            )
        self.torgb = ToRGB(out_channels, w_dim, conv_clamp)

    @property
    def synthesis_layers(self) -> list[SynthesisLayer]:
        """``layers`` as the SynthesisLayers they are (nn.ModuleList types its items as plain modules)."""
        return [cast(SynthesisLayer, layer) for layer in self.layers]

    def forward(
        self,
        x: torch.Tensor | None,
        image: torch.Tensor | None,
        ws: torch.Tensor,
        noise: list[torch.Tensor | None],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.first:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        if x is None:
            raise ValueError(f"the {self.resolution}px block needs the previous block's features")
        for index, layer in enumerate(self.layers):
            x = layer(x, ws[:, index], noise[index])
        rgb = self.torgb(x, ws[:, len(self.layers)]).float()
        if image is not None:
            # The RGB skip path stays in fp32 under autocast: it accumulates into the output image.
            with torch.autocast(device_type=image.device.type, enabled=False):
                image = upsample_2x(image) + rgb
        return x, rgb if image is None else image


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at a resolution: channel_base / resolution, capped (the StyleGAN2/ADA rule)."""
    return max(1, min(channel_base // resolution, channel_max))


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> images [N, 3, R, R] (unbounded; the training data is in [-1, 1])."""

    def __init__(
        self,
        w_dim: int,
        resolution: int,
        channel_base: int,
        channel_max: int,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        log2 = int(math.log2(resolution))
        if resolution < 4 or 2**log2 != resolution:
            raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
        self.resolution, self.w_dim = resolution, w_dim
        resolutions = [2**i for i in range(2, log2 + 1)]
        self.blocks = nn.ModuleList(
            [
                SynthesisBlock(
                    channels_at(r // 2, channel_base, channel_max) if r > 4 else 0,
                    channels_at(r, channel_base, channel_max),
                    w_dim,
                    r,
                    conv_clamp,
                )
                for r in resolutions
            ]
        )
        self.num_ws = 2 * log2 - 2

    @property
    def synthesis_blocks(self) -> list[SynthesisBlock]:
        """``blocks`` as the SynthesisBlocks they are (nn.ModuleList types its items as plain modules)."""
        return [cast(SynthesisBlock, block) for block in self.blocks]

    def noise_resolutions(self) -> list[int]:
        """The side of every noise input, in layer order."""
        return [layer.resolution for block in self.synthesis_blocks for layer in block.synthesis_layers]

    def draw_noise(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> list[torch.Tensor]:
        """Fresh per-layer noise [batch, 1, r, r], drawn in layer order from ``generator``."""
        return [
            torch.randn([batch, 1, r, r], generator=generator, device=device)
            for r in self.noise_resolutions()
        ]

    def forward(
        self,
        ws: torch.Tensor,
        *,
        noise_mode: str = "random",
        noise: list[torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        layers = [layer for block in self.synthesis_blocks for layer in block.synthesis_layers]
        layer_noise: list[torch.Tensor | None]
        if noise_mode == "const":
            layer_noise = [layer.noise_const[None, None] for layer in layers]
        elif noise_mode == "none":
            layer_noise = [None] * len(layers)
        elif noise is None:  # "random" without given noise: drawn here
            layer_noise = list(self.draw_noise(ws.shape[0], generator, ws.device))
        else:
            layer_noise = list(noise)
        x: torch.Tensor | None = None
        image: torch.Tensor | None = None
        w_index = noise_index = 0
        for block in self.synthesis_blocks:
            count = len(block.layers)
            x, image = block(
                x, image, ws[:, w_index : w_index + count + 1], layer_noise[noise_index : noise_index + count]
            )
            w_index += count
            noise_index += count
        assert image is not None  # resolution >= 4: the 4x4 block at least has run
        return image


class Generator(nn.Module):
    """z (+ labels) -> image: mapping, style mixing, truncation, synthesis."""

    def __init__(
        self,
        *,
        z_dim: int,
        w_dim: int,
        num_classes: int,
        mapping_layers: int,
        resolution: int,
        channel_base: int,
        channel_max: int,
        mapping_lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_classes = z_dim, w_dim, num_classes
        self.synthesis = SynthesisNetwork(w_dim, resolution, channel_base, channel_max, conv_clamp)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim, w_dim, num_classes, mapping_layers, mapping_lr_multiplier, w_avg_beta
        )

    def styles(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        truncation_psi: float = 1.0,
        mixing_prob: float = 0.0,
        generator: torch.Generator | None = None,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        """ws [N, num_ws, w_dim]. With probability ``mixing_prob`` an image takes its styles from layer
        ``cutoff`` on (cutoff uniform in 1..num_ws-1) from a second latent: StyleGAN's mixing regularisation
        (Karras et al. 2019, §3.1), which StyleGAN2 keeps (probability 0.9)."""
        # The mapping stays in fp32 under autocast: w and its running mean feed every layer.
        with torch.autocast(device_type=z.device.type, enabled=False):
            w = self.mapping.truncate(self.mapping(z, labels, update_w_avg=update_w_avg), truncation_psi)
            if mixing_prob > 0 and self.num_ws > 1:
                second = torch.randn(z.shape, generator=generator, device=z.device)
                w2 = self.mapping.truncate(self.mapping(second, labels), truncation_psi)
        ws = w[:, None].expand(-1, self.num_ws, -1)
        if mixing_prob > 0 and self.num_ws > 1:
            batch = z.shape[0]
            cutoff = torch.randint(1, self.num_ws, [batch], generator=generator, device=z.device)
            mixed = torch.rand([batch], generator=generator, device=z.device) < mixing_prob
            layer = torch.arange(self.num_ws, device=z.device)
            take_second = mixed[:, None] & (layer[None] >= cutoff[:, None])
            ws = torch.where(take_second[:, :, None], w2[:, None], ws)
        return ws

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        truncation_psi: float = 1.0,
        mixing_prob: float = 0.0,
        noise_mode: str = "random",
        noise: list[torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        ws = self.styles(
            z,
            labels,
            truncation_psi=truncation_psi,
            mixing_prob=mixing_prob,
            generator=generator,
            update_w_avg=update_w_avg,
        )
        return self.synthesis(ws, noise_mode=noise_mode, noise=noise, generator=generator)
