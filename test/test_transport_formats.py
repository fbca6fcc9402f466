"""ros/transport_formats.py against independent decoders: Pillow for the PNG/JPEG files and the
compressedDepth header + inverse-depth equation written out from compressed_depth_image_transport's
description (A = z (z + 1), B = 1 - A / depth_max, d = A / (q - B), q = 0 no depth)."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image as PILImage

from joint_perception.ros.transport_formats import (
    TransportFormatError,
    compressed_format,
    decode_compressed_depth,
    encode_compressed,
    encode_compressed_depth,
)


def pil_decode(data: bytes) -> np.ndarray:
    return np.array(PILImage.open(io.BytesIO(data)))


def independent_depth_decode(data: bytes) -> tuple[np.ndarray, float, float]:
    fmt, a, b = struct.unpack("<iff", data[:12])
    assert fmt == 0  # INV_DEPTH
    q = pil_decode(data[12:]).astype(np.float64)
    with np.errstate(divide="ignore"):
        d = np.where(q != 0, a / (q - b), np.nan)
    return d, a, b


def test_format_strings_are_image_transports():
    assert compressed_format("rgb8", "jpeg") == "rgb8; jpeg compressed bgr8"
    assert compressed_format("rgb8", "png") == "rgb8; png compressed bgr8"
    assert compressed_format("mono8", "png") == "mono8; png compressed "
    assert compressed_format("mono16", "png") == "mono16; png compressed "
    assert compressed_format("mono8", "jpeg") == "mono8; jpeg compressed mono8"
    with pytest.raises(TransportFormatError, match="jpeg cannot carry a mono16"):
        compressed_format("mono16", "jpeg")


@pytest.mark.parametrize(("encoding", "dtype"), [("mono8", np.uint8), ("mono16", np.uint16)])
def test_label_png_is_lossless(encoding, dtype):
    labels = np.random.default_rng(0).integers(0, 300 if dtype == np.uint16 else 41, (30, 40))
    labels = labels.astype(dtype)
    fmt, data = encode_compressed(labels, encoding, "png", png_level=9)
    assert fmt == f"{encoding}; png compressed "
    np.testing.assert_array_equal(pil_decode(data), labels)


def test_colour_is_stored_bgr_and_decodes_back_to_rgb():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    # "compressed bgr8": OpenCV's imdecode (what image_transport's subscriber calls) returns
    # BGR; the file itself is a standard PNG/JPEG, so Pillow reads red as red
    fmt, data = encode_compressed(rgb, "rgb8", "png")
    assert fmt == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(pil_decode(data), rgb)
    fmt, data = encode_compressed(rgb, "rgb8", "jpeg", jpeg_quality=95)
    assert fmt == "rgb8; jpeg compressed bgr8"
    assert np.abs(pil_decode(data).astype(int) - rgb).max() <= 3


def test_compressed_depth_matches_the_reference_equation():
    depth = np.array([[0.2, 0.5, 1.0, 2.0], [5.0, 9.99, 10.0, 10.5]], np.float32)
    depth = np.vstack([depth, [[np.nan, np.inf, -np.inf, 0.0]]]).astype(np.float32)
    fmt, data = encode_compressed_depth(depth, depth_max=10.0, depth_quantization=100.0)
    assert fmt == "32FC1; compressedDepth png"
    d, a, b = independent_depth_decode(data)
    assert a == pytest.approx(10100.0) and b == pytest.approx(1 - 10100.0 / 10.0)
    finite = np.isfinite(depth) & (depth > 0) & (depth <= 10.0)
    np.testing.assert_array_equal(np.isfinite(d), finite)  # NaN, ±Inf, 0, > max: no depth
    # quantisation error below one step d^2 / A
    err = np.abs(d[finite] - depth[finite])
    assert np.all(err <= depth[finite] ** 2 / a + 1e-6)
    np.testing.assert_allclose(d[0, :4], [0.2, 0.5, 1.0, 2.0], rtol=1e-6)
    # the package's own decoder agrees with the independent one
    np.testing.assert_allclose(decode_compressed_depth(fmt, data), d, rtol=1e-6, equal_nan=True)


def test_compressed_depth_saturates_instead_of_overflowing_near_the_camera():
    fmt, data = encode_compressed_depth(np.array([[0.05, 0.1]], np.float32))
    d, a, b = independent_depth_decode(data)
    np.testing.assert_allclose(d, a / (65535 - b), rtol=1e-6)  # the nearest representable


def test_bad_arrays_are_refused():
    with pytest.raises(TransportFormatError, match="float32"):
        encode_compressed_depth(np.zeros((2, 2), np.float64))
    with pytest.raises(TransportFormatError, match="depth_max"):
        encode_compressed_depth(np.zeros((2, 2), np.float32), depth_max=0.0)
    with pytest.raises(TransportFormatError, match="rgb8 needs"):
        encode_compressed(np.zeros((2, 2), np.uint8), "rgb8", "jpeg")
    with pytest.raises(TransportFormatError, match="too short"):
        decode_compressed_depth("32FC1; compressedDepth png", b"123")
