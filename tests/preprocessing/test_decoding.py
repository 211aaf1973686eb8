from __future__ import annotations

import io
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.core.imaging.decoding import (
    ImageDecodeError,
    decode_image,
    decode_mask,
    encode_mask_png,
    encode_png,
)


def smooth_rgb(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).random((height, width, 3)).astype(np.float32) * 255
    return cv2.GaussianBlur(noise, (0, 0), 2).astype(np.uint8)


def pil_bytes(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming_size(width: int, height: int) -> bytes:
    """A valid PNG header declaring ``width`` x ``height`` RGB pixels, followed by almost no data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def jpeg_claiming_size(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) is rewritten to declare ``width`` x ``height``."""
    data = bytearray(pil_bytes(Image.fromarray(smooth_rgb()), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_png_round_trip_is_exact():
    rgb = smooth_rgb()
    decoded = decode_image(encode_png(rgb))
    assert decoded.dtype == np.uint8 and decoded.shape == rgb.shape
    np.testing.assert_array_equal(decoded, rgb)


def test_jpeg_channels_are_rgb_not_bgr():
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 220
    decoded = decode_image(pil_bytes(Image.fromarray(red), "JPEG", quality=95))
    assert decoded[..., 0].mean() > 200 and decoded[..., 2].mean() < 20


def test_zero_bytes_refused():
    with pytest.raises(ImageDecodeError) as info:
        decode_image(b"")
    assert info.value.reason == "empty"
    assert isinstance(info.value, InvalidArgument)


@pytest.mark.parametrize(
    "payload", [b"hello, this is not an image" * 10, b"%PDF-1.7\n" + bytes(200), bytes(500)]
)
def test_non_image_bytes_refused(payload):
    with pytest.raises(ImageDecodeError) as info:
        decode_image(payload)
    assert info.value.reason == "not_an_image"


@pytest.mark.parametrize("missing", [1, 2, 50, 400, 2000])
def test_truncated_jpeg_refused_not_half_decoded(missing):
    data = pil_bytes(Image.fromarray(smooth_rgb(120, 160)), "JPEG", quality=90)
    assert len(data) > missing + 400
    # OpenCV alone would happily return a partly grey image for these.
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data[:-missing])
    assert info.value.reason == "truncated"


def test_truncated_png_refused():
    data = encode_png(smooth_rgb(120, 160))
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data[: len(data) // 2])
    assert info.value.reason in {"truncated", "corrupt"}


def test_grayscale_becomes_rgb():
    gray = smooth_rgb()[..., 0]
    for data in (pil_bytes(Image.fromarray(gray), "PNG"), pil_bytes(Image.fromarray(gray), "JPEG")):
        decoded = decode_image(data)
        assert decoded.shape == (*gray.shape, 3)
        np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])
    np.testing.assert_array_equal(decode_image(pil_bytes(Image.fromarray(gray), "PNG"))[..., 1], gray)


def test_rgba_is_composited_on_white():
    rgba = np.zeros((4, 3, 4), np.uint8)
    rgba[..., :3] = (200, 40, 10)
    rgba[0, :, 3] = 255  # opaque: the colour itself
    rgba[1, :, 3] = 0  # transparent: white, whatever colour is stored underneath
    rgba[2, :, 3] = 128  # half: the blend
    decoded = decode_image(pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(decoded[0, 0], (200, 40, 10))
    np.testing.assert_array_equal(decoded[1, 0], (255, 255, 255))
    expected = np.rint(np.array([200, 40, 10]) * 128 / 255 + 255 * (1 - 128 / 255))
    np.testing.assert_allclose(decoded[2, 0], expected, atol=1)


def test_sixteen_bit_png_is_scaled_not_truncated():
    # 65280 = 0xFF00: scaling gives 254, keeping the high byte would give 255; 255 -> 1 (high byte: 0).
    values = np.array([0, 255, 32896, 65280, 65535], np.uint16)
    expected = np.array([0, 1, 128, 254, 255], np.uint8)
    gray16 = np.tile(values, (3, 1))
    ok, gray_png = cv2.imencode(".png", gray16)
    rgb16 = np.dstack([gray16, gray16 // 2, np.full_like(gray16, 65535)])  # R, G, B
    ok2, rgb_png = cv2.imencode(".png", np.ascontiguousarray(rgb16[..., ::-1]))  # OpenCV writes BGR
    assert ok and ok2
    gray = decode_image(gray_png.tobytes())
    np.testing.assert_array_equal(gray[0, :, 0], expected)
    rgb = decode_image(rgb_png.tobytes())
    np.testing.assert_array_equal(rgb[0, :, 0], expected)
    np.testing.assert_array_equal(
        rgb[0, :, 1], np.rint((values // 2).astype(np.float64) * 255 / 65535).astype(np.uint8)
    )
    np.testing.assert_array_equal(rgb[0, :, 2], 255)


def test_sixteen_bit_rgba_png_composited():
    rgba16 = np.zeros((2, 2, 4), np.uint16)
    rgba16[..., 2] = 65535  # red in BGRA order
    rgba16[0, :, 3] = 65535
    ok, data = cv2.imencode(".png", rgba16)
    decoded = decode_image(data.tobytes())
    np.testing.assert_array_equal(decoded[0, 0], (255, 0, 0))
    np.testing.assert_array_equal(decoded[1, 0], (255, 255, 255))


def test_palette_images():
    palette_image = Image.fromarray(smooth_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    decoded = decode_image(pil_bytes(palette_image, "PNG"))
    np.testing.assert_array_equal(decoded, np.asarray(palette_image.convert("RGB")))
    with_transparency = palette_image.copy()
    with_transparency.info["transparency"] = 0
    decoded = decode_image(pil_bytes(with_transparency, "PNG", transparency=0))
    transparent = np.asarray(palette_image) == 0
    assert transparent.any()
    np.testing.assert_array_equal(decoded[transparent], 255)


# Pillow warns above its own limit (89 Mpx) while opening lazily; the refusal is ours.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_huge_declared_png_refused_before_decoding():
    # The file holds ~100 bytes of pixel data: had it been decoded, the error would be "truncated".
    start = time.perf_counter()
    with pytest.raises(ImageDecodeError) as info:
        decode_image(png_claiming_size(12_000, 12_000))
    assert info.value.reason == "too_large"
    assert "12000x12000" in str(info.value)
    assert time.perf_counter() - start < 1.0


def test_huge_declared_jpeg_refused_before_decoding():
    with pytest.raises(ImageDecodeError) as info:
        decode_image(jpeg_claiming_size(60_000, 50_000))
    assert info.value.reason == "too_large"


def test_size_beyond_pillows_own_ceiling_still_reports_too_large():
    with pytest.raises(ImageDecodeError) as info:
        decode_image(png_claiming_size(100_000, 100_000))
    assert info.value.reason == "too_large"


def test_max_pixels_is_configurable():
    data = encode_png(smooth_rgb(48, 64))
    assert decode_image(data, max_pixels=48 * 64).shape == (48, 64, 3)
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, max_pixels=48 * 64 - 1)
    assert info.value.reason == "too_large"


def test_mask_png_round_trip():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    data = encode_mask_png(mask)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).ndim == 2
    np.testing.assert_array_equal(decode_mask(data), mask)


def test_encoders_refuse_wrong_arrays():
    with pytest.raises(InvalidArgument):
        encode_png(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InvalidArgument):
        encode_png(np.zeros((4, 4), np.uint8))
    with pytest.raises(InvalidArgument):
        encode_mask_png(np.zeros((4, 4, 3), bool))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=300))
def test_arbitrary_bytes_decode_or_raise_typed_error(payload):
    try:
        decoded = decode_image(payload)
    except ImageDecodeError as error:
        assert error.reason in {
            "empty",
            "not_an_image",
            "too_large",
            "truncated",
            "unsupported_mode",
            "corrupt",
        }
    else:
        assert decoded.dtype == np.uint8 and decoded.ndim == 3 and decoded.shape[2] == 3


_JPEG = pil_bytes(Image.fromarray(smooth_rgb(40, 40, seed=3)), "JPEG")


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=len(_JPEG) - 1))
def test_every_truncation_of_a_jpeg_is_refused(length):
    with pytest.raises(ImageDecodeError):
        decode_image(_JPEG[:length])


def pillow_rgb(data: bytes) -> np.ndarray:
    """What Pillow alone decodes (EXIF orientation applied): the reference for OpenCV's JPEG path."""
    from PIL import ImageOps

    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


@pytest.mark.parametrize(
    "params",
    [
        {"quality": 95},
        {"quality": 75, "subsampling": 0},
        {"quality": 90, "subsampling": 1},
        {"progressive": True},
    ],
)
@pytest.mark.parametrize("size", [(450, 600), (151, 201)])
def test_jpeg_pixels_are_the_ones_pillow_decodes(params, size):
    image = Image.fromarray(smooth_rgb(*size, seed=5))
    data = pil_bytes(image, "JPEG", **params)
    opencv_written = cv2.imencode(".jpg", cv2.cvtColor(smooth_rgb(*size, seed=6), cv2.COLOR_RGB2BGR))[1]
    for payload in (data, data + bytes(7), opencv_written.tobytes()):  # trailing bytes: Pillow's path
        np.testing.assert_array_equal(decode_image(payload), pillow_rgb(payload))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_jpeg_exif_orientation_is_applied(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = pil_bytes(Image.fromarray(smooth_rgb(40, 64, seed=2)), "JPEG", exif=exif.tobytes())
    decoded = decode_image(data)
    assert decoded.shape == ((40, 64, 3) if orientation == 3 else (64, 40, 3))
    np.testing.assert_array_equal(decoded, pillow_rgb(data))


def test_grayscale_jpeg_becomes_rgb():
    data = pil_bytes(Image.fromarray(smooth_rgb(30, 40)[..., 0]), "JPEG")
    decoded = decode_image(data)
    assert decoded.shape == (30, 40, 3)
    np.testing.assert_array_equal(decoded, pillow_rgb(data))
