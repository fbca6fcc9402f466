"""image_codec: every encoding round-trips bit-exactly; every malformed buffer is refused."""

import array

import cv2
import numpy as np
import pytest

from joint_perception.image_codec import (
    ENCODINGS,
    ImageFormatError,
    decode_compressed,
    decode_image,
    encode_compressed,
    encode_image,
    image_to_rgb8,
    parse_compressed_format,
    to_rgb8,
)

H, W = 5, 6  # even width for the 4:2:2 encodings


def _sample(encoding, rng):
    info = ENCODINGS[encoding]
    shape = (H, W) if info.channels == 1 else (H, W, info.channels)
    if info.dtype.kind == "f":
        x = rng.standard_normal(shape).astype(np.float32)
        x.reshape(-1)[:3] = [np.nan, np.inf, -0.0]
        return x
    return rng.integers(0, np.iinfo(info.dtype).max + 1, shape, dtype=info.dtype.newbyteorder("="))


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint8).tobytes()


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("pad", [0, 3])
def test_roundtrip_bit_exact(encoding, big, pad):
    rng = np.random.default_rng(0)
    x = _sample(encoding, rng)
    step, data = encode_image(x, encoding, is_bigendian=big)
    bpp = ENCODINGS[encoding].bytes_per_pixel
    assert step == W * bpp and len(data) == step * H
    if pad:  # re-lay rows with padding bytes, as some drivers do
        rows = np.asarray(data).reshape(H, step)
        padded = np.full((H, step + pad), 0xAB, np.uint8)
        padded[:, :step] = rows
        step, data = step + pad, array.array("B", padded.tobytes())  # rclpy's type
    y = decode_image(encoding, H, W, step, data, is_bigendian=int(big))
    assert y.shape == x.shape and y.dtype == x.dtype.newbyteorder("=")
    assert _bits(y) == _bits(x)


def test_big_endian_hand_value():
    # 0x0102 stored big-endian is bytes 01 02
    y = decode_image("16UC1", 1, 2, 4, bytes([1, 2, 0, 5]), is_bigendian=1)
    assert y.tolist() == [[258, 5]] and y.dtype == np.uint16
    y = decode_image("16UC1", 1, 2, 4, bytes([1, 2, 0, 5]), is_bigendian=0)
    assert y.tolist() == [[513, 1280]]


def test_decode_is_zero_copy_view():
    data = bytearray(range(24))
    y = decode_image("rgb8", 2, 4, 12, data)
    data[0] = 200
    assert y[0, 0, 0] == 200


@pytest.mark.parametrize(
    "args, match",
    [
        (("rgb16", 2, 2, 12, bytes(24)), "unsupported image encoding 'rgb16'; supported: rgb8"),
        (("rgb8", 2, 2, 5, bytes(10)), "step 5 < width 2 x 3"),
        (("rgb8", 2, 2, 6, bytes(11)), "data has 11 bytes, expected step 6 x height 2 = 12"),
        (("rgb8", 2, 2, 6, bytes(13)), "data has 13 bytes"),
        (("rgb8", 2, 2, 6, b""), "empty data"),
        (("rgb8", 0, 2, 6, b""), "zero/negative size"),
        (("mono8", 2, 0, 0, bytes(2)), "zero/negative size"),
        (("uyvy", 1, 3, 6, bytes(6)), "even width"),
    ],
)
def test_decode_errors(args, match):
    with pytest.raises(ImageFormatError, match=match):
        decode_image(*args)


def test_encode_errors():
    with pytest.raises(ImageFormatError, match="needs dtype uint8, got float32"):
        encode_image(np.zeros((2, 2, 3), np.float32), "rgb8")
    with pytest.raises(ImageFormatError, match=r"shape \(H, W, 3\), got \(2, 2\)"):
        encode_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ImageFormatError, match="unsupported"):
        encode_image(np.zeros((2, 2), np.uint8), "jpeg")
    # (H, W, 1) is accepted for one-channel encodings
    step, data = encode_image(np.full((2, 3, 1), 7, np.uint8), "mono8")
    assert step == 3 and bytes(data) == bytes([7] * 6)


def test_to_rgb8_channel_orders():
    rgb = np.array([[[10, 20, 30], [40, 50, 60]]], np.uint8)
    assert to_rgb8(rgb, "rgb8") is rgb
    assert np.array_equal(to_rgb8(rgb[..., ::-1].copy(), "bgr8"), rgb)
    rgba = np.concatenate([rgb, np.full((1, 2, 1), 99, np.uint8)], axis=2)
    assert np.array_equal(to_rgb8(rgba, "rgba8"), rgb)
    assert np.array_equal(to_rgb8(rgba[..., [2, 1, 0, 3]].copy(), "bgra8"), rgb)
    grey = np.array([[0, 255]], np.uint8)
    assert to_rgb8(grey, "mono8").tolist() == [[[0, 0, 0], [255, 255, 255]]]
    assert to_rgb8(np.array([[0x12FF]], np.uint16), "mono16").tolist() == [[[0x12] * 3]]
    with pytest.raises(ImageFormatError, match="not a colour encoding"):
        to_rgb8(np.zeros((2, 2), np.float32), "32FC1")


def test_yuv422_decodes_with_bt601_limited_range():
    # grey pixels (U = V = 128): R = G = B = 1.164 * (Y - 16) (BT.601 studio swing)
    def grey(y):
        return round(1.164 * (y - 16))

    uyvy = np.array([128, 128, 128, 128], np.uint8)  # U Y0 V Y1
    out = image_to_rgb8("uyvy", 1, 2, 4, uyvy.tobytes())
    assert out.shape == (1, 2, 3) and np.all(np.abs(out.astype(int) - grey(128)) <= 1)
    yuy2 = np.array([200, 128, 50, 128], np.uint8)  # Y0 U Y1 V
    out = image_to_rgb8("yuv422_yuy2", 1, 2, 4, yuy2.tobytes())
    assert np.all(np.abs(out[0, 0].astype(int) - grey(200)) <= 1)
    assert np.all(np.abs(out[0, 1].astype(int) - grey(50)) <= 1)
    # yuv422 is the deprecated name of uyvy: same bytes, same result
    assert np.array_equal(
        image_to_rgb8("yuv422", 1, 2, 4, uyvy.tobytes()),
        image_to_rgb8("uyvy", 1, 2, 4, uyvy.tobytes()),
    )


def test_compressed_roundtrip_png_exact_and_jpeg_close():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    fmt, data = encode_compressed(rgb, "png")
    assert fmt == "rgb8; png compressed bgr8"
    assert np.array_equal(decode_compressed(fmt, data), rgb)
    assert np.array_equal(decode_compressed("png", data), rgb)  # legacy bare format
    smooth = np.zeros((32, 32, 3), np.uint8)
    smooth[..., 0], smooth[..., 2] = 200, 40  # reddish: a channel swap would be obvious
    fmt, data = encode_compressed(smooth, "jpeg", quality=95)
    assert fmt == "rgb8; jpeg compressed bgr8"
    out = decode_compressed(fmt, data)
    assert np.abs(out.astype(int) - smooth).max() <= 3
    # "compressed rgb8": the stored channels are already RGB
    ok, raw = cv2.imencode(".png", rgb)
    assert np.array_equal(decode_compressed("rgb8; png compressed rgb8", raw.tobytes()), rgb)


def test_compressed_errors():
    with pytest.raises(ImageFormatError, match="labelled jpeg .* no PNG/JPEG signature"):
        decode_compressed("jpeg", b"\x00\x01\x02\x03")
    with pytest.raises(ImageFormatError, match="empty data"):
        decode_compressed("png", b"")
    with pytest.raises(ImageFormatError, match="depth transport"):
        decode_compressed("16UC1; compressedDepth png", b"xx")
    with pytest.raises(ImageFormatError, match="unsupported compressed image format 'webp'"):
        decode_compressed("webp", b"xx")
    with pytest.raises(ImageFormatError, match="quality"):
        encode_compressed(np.zeros((2, 2, 3), np.uint8), "jpeg", quality=0)
    assert parse_compressed_format("bgr8; jpeg compressed bgr8") == ("bgr8", "jpeg", "bgr8")


def test_real_bag_frame_jpeg_matches_png(shared_data):
    rgb = cv2.cvtColor(cv2.imread(str(shared_data / "nyuv2_test/rgb/0001.png")), cv2.COLOR_BGR2RGB)
    fmt, data = encode_compressed(rgb, "jpeg", 90)
    out = decode_compressed(fmt, data)
    assert out.shape == (480, 640, 3)
    assert np.abs(out.astype(np.float32) - rgb).mean() < 4.0
