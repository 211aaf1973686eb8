"""Adaptive discriminator augmentation (ADA): Karras et al. 2020, "Training Generative Adversarial Networks
with Limited Data".

The discriminator only ever sees augmented images, real and generated alike, and the generator is trained
through the same augmentations; because every transformation is applied with probability p < 1 the
distortions are "non-leaking" (§2.2, §2.3): the generator cannot match the augmented distribution except
by matching the clean one. Everything here is differentiable with respect to the images, which both the
generator's loss and R1 (taken with respect to the un-augmented reals) need.

The ``bgc`` set of the paper (§2.3, appendix B) in its fixed order, each applied per image with
probability p (the two arbitrary rotations with 1 - sqrt(1 - p), so that some rotation happens with p):

- pixel blitting: x-flip, 90-degree rotations, integer translation (uniform, up to 0.125 of the side);
- general geometric: isotropic scaling (lognormal, std 0.2 ln 2), rotation (uniform), anisotropic scaling
  (lognormal, std 0.2 ln 2), rotation, fractional translation (normal, std 0.125 of the side);
- colour: brightness (+N(0, 0.2)), contrast (x lognormal, std 0.5 ln 2), luma flip, hue rotation
  (uniform), saturation (x lognormal, std ln 2) — 4x4 affine maps of RGB around the luma axis.

Geometry is composed into one affine map per image and applied once with reflection padding (as in the
paper). Images that drew only blitting transforms are resampled with nearest-neighbour (exact pixel copies);
images with a general transform are resampled bilinearly at 2x supersampling and box-filtered back, a plain
stand-in for the paper's wavelet anti-aliasing filters. Images that drew nothing are passed through
untouched, so p = 0 is exactly the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BLIT = ("xflip", "rotate90", "xint")
GEOMETRIC = ("scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
PRESETS = {"bgc": BLIT + GEOMETRIC + COLOR, "bg": BLIT + GEOMETRIC, "b": BLIT, "c": COLOR, "none": ()}

_LUMA = torch.tensor([1.0, 1.0, 1.0]) / math.sqrt(3.0)


def _affine2d(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor
) -> torch.Tensor:
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack(
        [torch.stack([a, b, tx], -1), torch.stack([c, d, ty], -1), torch.stack([zero, zero, one], -1)], 1
    )


class AugmentPipe:
    """images [N, 3, H, W] -> augmented images, each transform applied per image with probability ``p``."""

    def __init__(self, transforms: tuple[str, ...] | str = "bgc", p: float = 0.0) -> None:
        names = PRESETS[transforms] if isinstance(transforms, str) else tuple(transforms)
        unknown = sorted(set(names) - set(PRESETS["bgc"]))
        if unknown:
            raise ValueError(f"unknown augmentation(s) {unknown}; known: {', '.join(PRESETS['bgc'])}")
        self.transforms = frozenset(names)
        self.p = float(p)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.p <= 0 or not self.transforms:
            return images
        images = self._geometry(images, generator)
        return self._color(images, generator)

    # -- random draws: every call draws the same numbers in the same order, whatever is enabled --------
    def _draws(
        self,
        batch: int,
        generator: torch.Generator | None,
        device: torch.device,
        name: str,
        probability: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(applied [N] bool, uniform [N, 2] in [0, 1), normal [N, 2]) for one transform."""
        chance = torch.rand([batch], generator=generator, device=device)
        uniform = torch.rand([batch, 2], generator=generator, device=device)
        normal = torch.randn([batch, 2], generator=generator, device=device)
        return (chance < probability) & (name in self.transforms), uniform, normal

    def _geometry(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        batch, _, height, width = x.shape
        device, p = x.device, self.p
        p_rot = 1.0 - math.sqrt(max(0.0, 1.0 - p))
        eye = torch.eye(3, device=device).repeat(batch, 1, 1)
        # Matrices map output to input coordinates in grid_sample's normalised [-1, 1] space (the image
        # centre is the origin). Every distribution below is symmetric under inversion, so sampling the
        # inverse transform directly gives the same distribution of augmentations.
        matrix = eye
        blit = torch.zeros(batch, dtype=torch.bool, device=device)  # drew a pixel-blitting transform
        general = torch.zeros(batch, dtype=torch.bool, device=device)  # drew a general geometric one
        zero = torch.zeros(batch, device=device)

        on, uniform, _ = self._draws(batch, generator, device, "xflip", p)
        flip = on & (uniform[:, 0] < 0.5)
        matrix = matrix @ _affine2d(1 - 2 * flip.float(), zero, zero, 1 + zero, zero, zero)
        blit |= flip
        on, uniform, _ = self._draws(batch, generator, device, "rotate90", p)
        quarter = torch.floor(uniform[:, 0] * 4).long() * on  # 0..3 quarter turns; exact cos/sin
        cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=device)[quarter]
        sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=device)[quarter]
        matrix = matrix @ _affine2d(cos, -sin, sin, cos, zero, zero)
        blit |= quarter > 0
        on, uniform, _ = self._draws(batch, generator, device, "xint", p)
        shift = torch.round((uniform * 2 - 1) * 0.125 * torch.tensor([width, height], device=device))
        shift = shift * on[:, None]  # whole pixels; one pixel is 2 / side in normalised units
        matrix = matrix @ _affine2d(
            1 + zero, zero, zero, 1 + zero, shift[:, 0] * 2 / width, shift[:, 1] * 2 / height
        )
        blit |= (shift != 0).any(dim=1)

        for name, probability in (
            ("scale", p),
            ("rotate", p_rot),
            ("aniso", p),
            ("rotate", p_rot),
            ("xfrac", p),
        ):
            on, uniform, normal = self._draws(batch, generator, device, name, probability)
            general |= on
            if name == "scale":
                s = torch.where(on, torch.exp2(normal[:, 0] * 0.2), 1 + zero)
                step = _affine2d(s, zero, zero, s, zero, zero)
            elif name == "aniso":
                s = torch.where(on, torch.exp2(normal[:, 0] * 0.2), 1 + zero)
                step = _affine2d(s, zero, zero, 1 / s, zero, zero)
            elif name == "rotate":
                theta = torch.where(on, (uniform[:, 0] * 2 - 1) * math.pi, zero)
                step = _affine2d(theta.cos(), -theta.sin(), theta.sin(), theta.cos(), zero, zero)
            else:  # fractional translation, std 0.125 of the side = 0.25 in normalised units
                t = normal * 0.125 * 2 * on[:, None]
                step = _affine2d(1 + zero, zero, zero, 1 + zero, t[:, 0], t[:, 1])
            matrix = matrix @ step

        result = x
        exact = blit & ~general
        if exact.any():
            index = exact.nonzero().squeeze(1)
            grid = F.affine_grid(
                matrix[index, :2].to(x.dtype), [len(index), x.shape[1], height, width], align_corners=False
            )
            moved = F.grid_sample(
                x[index], grid, mode="nearest", padding_mode="reflection", align_corners=False
            )
            result = result.index_put((index,), moved)
        if general.any():
            index = general.nonzero().squeeze(1)
            grid = F.affine_grid(
                matrix[index, :2].to(x.dtype),
                [len(index), x.shape[1], 2 * height, 2 * width],
                align_corners=False,
            )
            moved = F.grid_sample(
                x[index], grid, mode="bilinear", padding_mode="reflection", align_corners=False
            )
            result = result.index_put((index,), F.avg_pool2d(moved, 2))
        return result

    def _color(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        batch, device, p = x.shape[0], x.device, self.p
        luma = _LUMA.to(device)
        outer = torch.outer(luma, luma)  # projection onto the luma (grey) axis
        eye = torch.eye(3, device=device)
        cross = torch.tensor(
            [[0.0, -luma[2], luma[1]], [luma[2], 0.0, -luma[0]], [-luma[1], luma[0], 0.0]], device=device
        )
        linear = eye.repeat(batch, 1, 1)
        offset = torch.zeros(batch, 3, device=device)
        changed = torch.zeros(batch, dtype=torch.bool, device=device)
        for name in COLOR:
            on, uniform, normal = self._draws(batch, generator, device, name, p)
            changed |= on
            if name == "brightness":
                offset = offset + (normal[:, 0] * 0.2 * on)[:, None]
                continue
            if name == "contrast":
                step = eye * torch.where(on, torch.exp2(normal[:, 0] * 0.5), 1.0)[:, None, None]
            elif name == "lumaflip":  # Householder reflection of the luma component
                flip = (on & (uniform[:, 0] < 0.5)).float()
                step = eye - 2 * outer * flip[:, None, None]
            elif name == "hue":  # Rodrigues rotation about the luma axis
                theta = torch.where(on, (uniform[:, 0] * 2 - 1) * math.pi, 0.0)[:, None, None]
                step = eye * theta.cos() + cross * theta.sin() + outer * (1 - theta.cos())
            else:  # saturation: scale the chroma (off-axis) part
                s = torch.where(on, torch.exp2(normal[:, 0]), 1.0)[:, None, None]
                step = eye + (s - 1) * (eye - outer)
            linear, offset = step @ linear, (step @ offset[:, :, None]).squeeze(2)
        if not changed.any():
            return x
        index = changed.nonzero().squeeze(1)
        mapped = torch.einsum("nij,njhw->nihw", linear[index].to(x.dtype), x[index])
        mapped = mapped + offset[index].to(x.dtype)[:, :, None, None]
        return x.index_put((index,), mapped)


class AdaptiveAugment:
    """The ADA controller (§3): r_t = E[sign(D(real))] over the last ``interval`` minibatches.

    r_t near 1 means the discriminator is sure of every real image: it is overfitting. Every ``interval``
    minibatches p moves by sign(r_t - target) * images / (speed_kimg * 1000), so p can rise from 0 to 1 in
    ``speed_kimg`` thousand images (500k in the paper); p stays in [0, 1].
    """

    def __init__(
        self,
        pipe: AugmentPipe,
        *,
        target: float = 0.6,
        interval: int = 4,
        speed_kimg: float = 500.0,
        adaptive: bool = True,
    ) -> None:
        self.pipe, self.target, self.interval, self.speed_kimg = pipe, target, interval, speed_kimg
        self.adaptive = adaptive
        self.sign_sum, self.count, self.minibatches, self.last_rt = 0.0, 0, 0, float("nan")

    @property
    def p(self) -> float:
        return self.pipe.p

    def observe(self, real_logits: torch.Tensor) -> None:
        """Record one minibatch of the discriminator's raw outputs on (augmented) real images."""
        self.sign_sum += float(torch.sign(real_logits.detach().float()).sum())
        self.count += real_logits.numel()
        self.minibatches += 1
        if self.adaptive and self.minibatches >= self.interval:
            # ADA eq. (1): r_t = E[sign(D_train)]; 0 = no overfitting, 1 = complete overfitting.
            self.last_rt = self.sign_sum / self.count
            step = math.copysign(1.0, self.last_rt - self.target) if self.last_rt != self.target else 0.0
            self.pipe.p = min(1.0, max(0.0, self.pipe.p + step * self.count / (self.speed_kimg * 1000)))
            self.sign_sum, self.count, self.minibatches = 0.0, 0, 0

    def state_dict(self) -> dict[str, float | int | None]:
        return {
            "p": self.pipe.p,
            "sign_sum": self.sign_sum,
            "count": self.count,
            "minibatches": self.minibatches,
            "last_rt": None if math.isnan(self.last_rt) else self.last_rt,
        }

    def load_state_dict(self, state: dict) -> None:
        self.pipe.p = float(state["p"])
        self.sign_sum, self.count = float(state["sign_sum"]), int(state["count"])
        self.minibatches = int(state["minibatches"])
        self.last_rt = float("nan") if state["last_rt"] is None else float(state["last_rt"])
