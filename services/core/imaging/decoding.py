"""Decode untrusted image bytes into a uint8 RGB array, or refuse with a typed reason.

Dermoscopy archives mix JPEG and PNG (8- and 16-bit, palette, with and without alpha), and the
service receives bytes from users. Every way a payload can be wrong ends in an ``ImageDecodeError``
whose ``reason`` is a short code a caller can branch on; nothing is ever silently half-decoded.

Two choices worth knowing:

* The declared size is read from the header (Pillow opens lazily) and refused above ``max_pixels``
  *before* any pixel is decoded, so a small file claiming 100k x 100k pixels costs nothing.
* Transparency is composited onto white rather than dropped: the colour stored under a fully
  transparent pixel is undefined (often black), and black would look like the dermoscope's dark
  field or like pigment to the later steps, whereas white is what a viewer shows and is left alone
  by vignette handling and lesion segmentation, which both look for dark regions.

Pillow reads every header and decides what is refused. Complete 8-bit colour JPEGs with no rotation
to apply -- HAM10000's and MILK10K's images -- are then decoded by OpenCV (the same libjpeg-turbo
pixels, 30% faster than through Pillow; a test compares the two). OpenCV fills a truncated JPEG in
silently, so only data that ends with the end-of-image marker goes that way; the rest, and anything
OpenCV cannot read, is decoded by Pillow, which raises the typed error.
"""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from skingenbench.services.core.errors import InvalidArgument

DEFAULT_MAX_PIXELS = 50_000_000
ACCEPTED_FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "WEBP")
WHITE = (255, 255, 255)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_END_OF_IMAGE = b"\xff\xd9"
_GRAY16_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
# What Pillow's plugins raise on malformed input besides OSError (struct and zlib errors included).
_MALFORMED_DATA_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error, zlib.error)


class ImageDecodeError(InvalidArgument):
    """Bytes that are not a usable image. ``reason`` is one of: ``empty``, ``not_an_image``,
    ``too_large``, ``truncated``, ``unsupported_mode``, ``corrupt``."""

    def __init__(self, reason: str, message: str, *, hint: str = "", **context: object) -> None:
        super().__init__(message, hint=hint, reason=reason, **context)
        self.reason = reason


def decode_image(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    alpha_background: tuple[int, int, int] = WHITE,
) -> np.ndarray:
    """Decode ``data`` to a contiguous uint8 RGB array of shape (H, W, 3).

    Grayscale and palette images are expanded to RGB, 16-bit samples are scaled to 8 bits
    (``round(v * 255 / 65535)``, not the high byte), alpha is composited onto ``alpha_background``
    and EXIF orientation is applied (as ``cv2.imread`` does), so pixels match what a viewer shows.
    """
    if not data:
        raise ImageDecodeError(
            "empty", "image data is empty (0 bytes)", hint="check the upload or object key"
        )
    try:
        # Image.Image, not the ImageFile open() returns: exif_transpose below gives a plain Image.
        image: Image.Image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:  # Pillow's own ceiling (2 x its limit) is lower
        raise ImageDecodeError("too_large", f"declared image size refused: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            "not_an_image",
            f"{len(data)} bytes are not an image in an accepted format",
            hint=f"accepted formats: {', '.join(ACCEPTED_FORMATS)}",
        ) from exc
    except _MALFORMED_DATA_ERRORS as exc:  # a recognised signature followed by a broken header
        raise ImageDecodeError("corrupt", f"image header could not be parsed: {exc}") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageDecodeError(
            "too_large",
            f"declared size {width}x{height} = {width * height} pixels exceeds max_pixels={max_pixels}",
            hint="downscale the image or raise max_pixels if the source is trusted",
        )
    if _is_sixteen_bit_png(data):
        return _decode_sixteen_bit(data, alpha_background)
    if _is_plain_complete_jpeg(data, image):
        decoded = cv2.imdecode(
            np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
        )
        if decoded is not None and decoded.shape[:2] == (height, width):
            return decoded
    try:
        image.load()  # strict: Pillow raises on truncated data unless LOAD_TRUNCATED_IMAGES is set
        image = ImageOps.exif_transpose(image)
    except _MALFORMED_DATA_ERRORS as exc:
        reason = "truncated" if "truncated" in str(exc) else "corrupt"
        raise ImageDecodeError(reason, f"{image.format} data could not be decoded: {exc}") from exc
    return _to_rgb8(image, alpha_background)


def _is_sixteen_bit_png(data: bytes) -> bool:
    # Pillow reduces 16-bit colour PNGs to 8 bits by keeping the high byte; read IHDR's bit depth
    # (byte 24) and let OpenCV decode those at full depth instead.
    return data[:8] == _PNG_SIGNATURE and len(data) > 24 and data[24] == 16


def _is_plain_complete_jpeg(data: bytes, image: Image.Image) -> bool:
    """A colour JPEG that ends with its end-of-image marker (OpenCV would fill a truncated one in without
    a word) and whose EXIF orientation is absent or 1 (exif_transpose would leave it as it is)."""
    return (
        image.format == "JPEG"
        and image.mode == "RGB"
        and data.endswith(_JPEG_END_OF_IMAGE)
        and image.getexif().get(ExifTags.Base.Orientation, 1) == 1
    )


def _decode_sixteen_bit(data: bytes, alpha_background: tuple[int, int, int]) -> np.ndarray:
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.dtype != np.uint16:
        raise ImageDecodeError("truncated", "16-bit PNG data could not be decoded (truncated or corrupt)")
    samples: np.ndarray = decoded.astype(np.float32) / 65535.0
    if samples.ndim == 2:
        return _float_to_rgb8(np.repeat(samples[:, :, None], 3, axis=2))
    channel_order = cv2.COLOR_BGRA2RGBA if samples.shape[2] == 4 else cv2.COLOR_BGR2RGB
    samples = cv2.cvtColor(samples, channel_order)
    if samples.shape[2] == 4:
        return _float_to_rgb8(_composite(samples[:, :, :3], samples[:, :, 3], alpha_background))
    return _float_to_rgb8(samples)


def _to_rgb8(image: Image.Image, alpha_background: tuple[int, int, int]) -> np.ndarray:
    mode = image.mode
    if mode in _GRAY16_MODES:
        gray = np.clip(np.asarray(image, dtype=np.float32), 0, 65535) / 65535.0
        return _float_to_rgb8(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "F":
        raise ImageDecodeError("unsupported_mode", "floating-point images are not supported", mode=mode)
    has_alpha = mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        return _float_to_rgb8(_composite(rgba[:, :, :3], rgba[:, :, 3], alpha_background))
    try:
        rgb = image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageDecodeError("unsupported_mode", f"cannot convert mode {mode} to RGB", mode=mode) from exc
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def _composite(rgb: np.ndarray, alpha: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    backdrop = np.asarray(background, dtype=np.float32) / 255.0
    return rgb * alpha[:, :, None] + backdrop * (1.0 - alpha[:, :, None])


def _float_to_rgb8(samples: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.clip(np.rint(samples * 255.0), 0, 255).astype(np.uint8))


def encode_png(rgb: np.ndarray) -> bytes:
    """Lossless PNG bytes of a uint8 RGB (H, W, 3) array."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InvalidArgument(f"encode_png needs uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InvalidArgument("PNG encoding failed", shape=rgb.shape)
    return buffer.tobytes()


def encode_mask_png(mask: np.ndarray) -> bytes:
    """Single-channel PNG (0 / 255) of a boolean (H, W) mask."""
    if mask.ndim != 2:
        raise InvalidArgument(f"encode_mask_png needs a 2-D mask, got shape {mask.shape}")
    ok, buffer = cv2.imencode(".png", np.multiply(mask.astype(bool, copy=False), 255, dtype=np.uint8))
    if not ok:
        raise InvalidArgument("PNG encoding failed", shape=mask.shape)
    return buffer.tobytes()


def decode_mask(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Boolean (H, W) mask from image bytes: any non-black pixel is inside the mask."""
    return decode_image(data, max_pixels=max_pixels, alpha_background=(0, 0, 0)).max(axis=2) > 0
