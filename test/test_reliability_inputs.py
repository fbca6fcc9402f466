"""Input limits and checks the node applies before processing a frame (issue 14): pixel limit
on the declared / header size before decoding, compressed magic, absurd intrinsics, empty
frame_id. Pure functions, no ROS graph."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from joint_perception import image_codec
from joint_perception.geometry import intrinsics_problem
from joint_perception.image_codec import (
    DEFAULT_MAX_INPUT_PIXELS,
    CompressedFormatMismatch,
    ImageFormatError,
    InputTooLargeError,
    compressed_size,
    decode_compressed,
    image_to_rgb8,
)
from joint_perception.ros.conversions import frame_id_problem

K640 = [[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]]


def _encode(img: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


@pytest.fixture
def no_imdecode(monkeypatch):
    """Fail the test if OpenCV is asked to decode (allocate) the pixels."""

    def refuse(*_):
        raise AssertionError("cv2.imdecode called: pixels allocated before the size check")

    monkeypatch.setattr(image_codec.cv2, "imdecode", refuse)


def test_default_limit_admits_4k():
    assert 3840 * 2160 <= DEFAULT_MAX_INPUT_PIXELS < 4096 * 3072
    rgb = image_to_rgb8("rgb8", 2160, 3840, 3840 * 3, bytes(3840 * 2160 * 3))
    assert rgb.shape == (2160, 3840, 3)


def test_png_bomb_is_refused_on_its_header(no_imdecode):
    bomb = _encode(np.zeros((8192, 8192), np.uint8), ".png")
    assert len(bomb) < 1_000_000  # small on the wire, 64 MiB (x3 for RGB) once decoded
    assert compressed_size("png", bomb) == (8192, 8192)
    with pytest.raises(InputTooLargeError, match="8192x8192 .* above max_input_pixels"):
        decode_compressed("rgb8; png compressed bgr8", bomb)


def test_large_jpeg_is_refused_on_its_header(no_imdecode):
    jpeg = _encode(np.zeros((3072, 4096, 3), np.uint8), ".jpg")  # the 36 MB frame, compressed
    with pytest.raises(InputTooLargeError, match="4096x3072"):
        decode_compressed("jpeg", jpeg)
    with pytest.raises(InputTooLargeError):
        decode_compressed("jpeg", jpeg, max_pixels=4096 * 3072 - 1)


def test_raw_size_is_checked_before_the_buffer():
    # declared 4096x3072 rgb8 (36 MB) with no data: the limit speaks first, not the data check
    with pytest.raises(InputTooLargeError, match="4096x3072"):
        image_to_rgb8("rgb8", 3072, 4096, 4096 * 3, b"")
    with pytest.raises(ImageFormatError, match="empty data"):
        image_to_rgb8("rgb8", 3072, 4096, 4096 * 3, b"", max_pixels=None)


def test_compressed_bytes_must_match_the_declared_codec(no_imdecode):
    small = np.full((8, 8, 3), 100, np.uint8)
    cases = {
        "bmp": _encode(small, ".bmp"),
        "tiff": _encode(small, ".tiff"),
        "png": _encode(small, ".png"),
        "garbage": b"\x00" * 64,
    }
    for name, data in cases.items():
        with pytest.raises(CompressedFormatMismatch, match="labelled jpeg"):
            decode_compressed("rgb8; jpeg compressed bgr8", data)
        if name != "png":
            with pytest.raises(CompressedFormatMismatch, match="labelled png"):
                decode_compressed("png", data)


def test_truncated_and_valid_compressed_bytes():
    rgb = np.random.default_rng(0).integers(0, 255, (16, 24, 3), dtype=np.uint8)
    png = _encode(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), ".png")
    with pytest.raises(ImageFormatError):
        decode_compressed("png", png[:12])  # the signature but no header
    with pytest.raises(ImageFormatError, match="empty data"):
        decode_compressed("png", b"")
    assert compressed_size("png", png) == (16, 24)
    assert np.array_equal(decode_compressed("png", png), rgb)  # a good frame still decodes


@pytest.mark.parametrize(
    ("K", "reason"),
    [
        ([[1e-300, 0, 319.5], [0, 1e-300, 239.5], [0, 0, 1]], "absurd intrinsics: fx"),
        ([[525.0, 0, 319.5], [0, 1e12, 239.5], [0, 0, 1]], "absurd intrinsics: fy"),
        ([[525.0, 0, 1e6], [0, 525.0, 239.5], [0, 0, 1]], "principal point"),
        ([[np.nan, 0, 319.5], [0, 525.0, 239.5], [0, 0, 1]], "non-finite"),
        ([[np.inf, 0, 319.5], [0, 525.0, 239.5], [0, 0, 1]], "non-finite"),
        ([[-525.0, 0, 319.5], [0, 525.0, 239.5], [0, 0, 1]], "fx > 0"),
        (np.zeros((3, 3)), "all zeros"),
    ],
)
def test_absurd_intrinsics_have_a_reason(K, reason):
    got = intrinsics_problem(K, 640, 480)
    assert got is not None and reason in got


def test_plausible_intrinsics_pass():
    assert intrinsics_problem(K640, 640, 480) is None
    fisheye = [[100.0, 0, 319.5], [0, 100.0, 239.5], [0, 0, 1]]  # 145 deg: wide, not absurd
    assert intrinsics_problem(fisheye, 640, 480) is None


def test_frame_id_problem():
    assert frame_id_problem("camera_color_optical_frame") is None
    for bad in ("", "  "):
        assert "empty frame_id" in frame_id_problem(bad)


def test_cached_camera_info_prefers_the_matching_stamp():
    from joint_perception.ros.frame_buffer import CameraInfoMatcher

    m = CameraInfoMatcher("cached")
    m.add_info(100, "info100")
    m.add_info(200, "info200")
    assert m.add_image(100, "img100") == (("img100", "info100"), None)  # not the latest
    assert m.add_image(300, "img300") == (("img300", "info200"), None)  # none: the latest
