"""Images as readers see them: every image re-encoded to one format and one size.

Real dermoscopy arrives as 600x450 JPEGs and synthetic images as small PNGs; shown as they are, the file
format, the aspect ratio or the pixel count would answer "real or synthetic" for the reader. So every image
is centre-cropped to a square, resized to ``size`` pixels (Lanczos) and sent as a PNG without metadata:
what is left to judge is the picture.
"""

from __future__ import annotations

import io

DEFAULT_SIZE = 256


def display_png(data: bytes, size: int = DEFAULT_SIZE) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    side = min(rgb.size)
    left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
    square = rgb.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    square.save(out, format="PNG")
    return out.getvalue()
