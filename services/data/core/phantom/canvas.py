"""The lesion's own drawing surface: a square canvas centred on the lesion, lengths in lesion radii."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from skingenbench.services.data.core.phantom.contour import Contour
from skingenbench.services.data.core.phantom.raster import smooth_noise, smoothstep


class LesionCanvas:
    """The lesion in its own frame: a square canvas centred on the lesion, lengths in lesion radii."""

    def __init__(self, size: int, radius_px: float, base: np.ndarray) -> None:
        self.size = size
        self.radius = radius_px
        self.centre = (size - 1) / 2.0
        coords = (np.arange(size, dtype=np.float32) - self.centre) / radius_px
        self.u = coords[None, :]
        self.v = coords[:, None]
        self.lab = np.empty((size, size, 3), np.float32)
        self.lab[:] = base
        self.body: np.ndarray = np.zeros((size, size), np.float32)
        self.depth: np.ndarray = np.zeros((size, size), np.float32)  # 0 at the border, 1 at the deepest point
        self.extra_alpha = np.zeros((size, size), np.float32)  # structures reaching past the border

    def px(self, points: np.ndarray) -> np.ndarray:
        """Points in lesion radii -> fixed-point pixel coordinates for cv2 drawing (shift=4)."""
        return np.round((np.asarray(points) * self.radius + self.centre) * 16.0).astype(np.int32)

    def blank(self) -> np.ndarray:
        return np.zeros((self.size, self.size), np.uint8)

    def noise(self, rng: np.random.Generator, grid: int) -> np.ndarray:
        return smooth_noise(rng, (grid, grid), (self.size, self.size))

    def layer(self, canvas: np.ndarray, blur: float = 0.0) -> np.ndarray:
        """A drawn uint8 canvas as float weights in [0, 1], optionally softened (blur in radii)."""
        out: np.ndarray = canvas.astype(np.float32) * (1.0 / 255.0)
        if blur > 0 and blur * self.radius > 0.3:
            out = cv2.GaussianBlur(out, (0, 0), blur * self.radius)
        return out

    def discs(
        self, centres: np.ndarray, radii: np.ndarray, blur: float = 0.0, ellipses: np.ndarray | None = None
    ) -> np.ndarray:
        """Filled discs (radii in lesion radii); ``ellipses`` rows give (minor/major ratio, angle)."""
        canvas = self.blank()
        shapes = np.tile((1.0, 0.0), (len(radii), 1)) if ellipses is None else ellipses
        for centre, r, (ratio, angle) in zip(self.px(centres), radii, shapes, strict=True):
            major = max(1, int(r * self.radius * 16))
            axes = (major, max(1, int(major * ratio)))
            cv2.ellipse(
                canvas, (int(centre[0]), int(centre[1])), axes, float(angle), 0, 360, 255, -1, cv2.LINE_AA, 4
            )
        return self.layer(canvas, blur)

    def lines(self, polylines: Sequence[np.ndarray], widths: Sequence[float]) -> np.ndarray:
        """Open polylines (points in lesion radii) of the given widths (in lesion radii)."""
        canvas = self.blank()
        for line, width in zip(polylines, widths, strict=True):
            px_width = width * self.radius
            # Lines thinner than a pixel are drawn one pixel wide and proportionally fainter.
            value = int(255 * min(1.0, px_width))
            cv2.polylines(canvas, [self.px(line)], False, value, max(1, round(px_width)), cv2.LINE_AA, 4)
        return self.layer(canvas)

    def paint(self, weight: np.ndarray, colour: Sequence[float] | np.ndarray, opacity: float = 1.0) -> None:
        w = weight if opacity == 1.0 else weight * np.float32(opacity)
        self.lab += (np.asarray(colour, np.float32) - self.lab) * w[..., None]

    def shade(self, weight: np.ndarray, d_lab: Sequence[float]) -> None:
        """Shift colours by ``d_lab`` where ``weight`` is 1 (darken, redden...)."""
        self.lab += weight[..., None] * np.asarray(d_lab, np.float32)

    def points_inside(self, rng: np.random.Generator, n: int, contour: Contour, r_range=(0.0, 0.85)):
        """``n`` points within the border, at fractions ``r_range`` of the border's radius."""
        theta = rng.uniform(0.0, 2 * math.pi, n)
        frac = np.sqrt(rng.uniform(r_range[0] ** 2, r_range[1] ** 2, n))
        return contour.point(theta, frac)

    def blob(self, rng: np.random.Generator, centre: np.ndarray, axes: tuple[float, float], roughness: float):
        """A soft irregular blob (in [0, 1]) around ``centre``: an ellipse distance warped by noise."""
        angle = rng.uniform(0.0, math.pi)
        du, dv = self.u - centre[0], self.v - centre[1]
        c, s = math.cos(angle), math.sin(angle)
        d = np.sqrt(((du * c + dv * s) / axes[0]) ** 2 + ((dv * c - du * s) / axes[1]) ** 2)
        d = d + roughness * self.noise(rng, 7)
        return smoothstep(1.25, 0.7, d)
