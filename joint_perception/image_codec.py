"""Raw and compressed image buffers <-> numpy, for the ROS image encodings (no ROS imports).

The functions work on the *fields* of ``sensor_msgs/Image`` (``encoding``, ``height``,
``width``, ``step``, ``data``, ``is_bigendian``) and ``sensor_msgs/CompressedImage``
(``format``, ``data``), so they are usable and testable without ROS;
:mod:`joint_perception.ros.conversions` is the thin message layer on top.

Encodings follow ``sensor_msgs/image_encodings.hpp`` (REP 118 for depth images):

=============================  =====================  ==============================
encoding                       decoded array          notes
=============================  =====================  ==============================
``rgb8``, ``bgr8``             (H, W, 3) uint8
``rgba8``, ``bgra8``           (H, W, 4) uint8
``mono8``, ``8UC1``            (H, W) uint8
``mono16``, ``16UC1``          (H, W) uint16          16UC1 depth is millimetres
``32FC1``                      (H, W) float32         depth in metres, NaN invalid
``32FC3``                      (H, W, 3) float32      e.g. surface normals
``uyvy`` / ``yuv422``          (H, W, 2) uint8        raw packed 4:2:2, U Y0 V Y1
``yuyv`` / ``yuv422_yuy2``     (H, W, 2) uint8        raw packed 4:2:2, Y0 U Y1 V
=============================  =====================  ==============================

:func:`decode_image` is lossless (the 4:2:2 encodings stay packed); :func:`to_rgb8` does the
colour conversion to the pipeline's HxWx3 uint8 RGB input (docs/contracts.md section 1).

Input limits (issue 14): a frame larger than ``max_pixels`` (default
:data:`DEFAULT_MAX_INPUT_PIXELS`, sized for 4K) is refused with :class:`InputTooLargeError`
before any pixel buffer is touched: for raw images on the declared height and width, for
compressed images on the dimensions in the PNG/JPEG header (read by Pillow without decoding),
so a decompression bomb (a 191 kB PNG of 8192x8192 zeros) never allocates its pixels. The
compressed bytes must carry the magic of the declared codec (:class:`CompressedFormatMismatch`;
``cv2.imdecode`` would otherwise decode BMP or TIFF bytes labelled jpeg).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import cv2
import numpy as np


class ImageFormatError(ValueError):
    """An image buffer does not match its declared encoding/size, or cannot be decoded."""


class InputTooLargeError(ImageFormatError):
    """The frame has more pixels than the configured limit (refused before decoding)."""


class CompressedFormatMismatch(ImageFormatError):
    """Compressed bytes whose magic is not the declared codec's (or an unknown container)."""


#: Default limit of input pixels: 4096x2304 (9.4 MP), so 4K UHD (3840x2160) and DCI 4K
#: (4096x2160) pass. A 4096x2304 rgb8 frame is 28 MB, the decoded RGB copy as much again.
DEFAULT_MAX_INPUT_PIXELS = 4096 * 2304

_MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff"}


def check_input_pixels(height: int, width: int, max_pixels: int | None) -> None:
    """Refuse a ``height`` x ``width`` frame above ``max_pixels`` (None or <= 0: no limit).

    Raises:
        InputTooLargeError: naming the size and the limit.
    """
    if max_pixels is not None and max_pixels > 0 and int(height) * int(width) > max_pixels:
        raise InputTooLargeError(
            f"{width}x{height} frame has {int(height) * int(width)} pixels, above "
            f"max_input_pixels {max_pixels}"
        )


def compressed_magic(data) -> str | None:
    """``"png"``, ``"jpeg"`` or None (anything else: BMP, TIFF, WebP, garbage) from the first
    bytes."""
    head = bytes(memoryview(_as_uint8_buffer(data))[:8])
    for codec, magic in _MAGIC.items():
        if head.startswith(magic):
            return codec
    return None


def compressed_size(format_str: str, data) -> tuple[int, int]:
    """(height, width) from the header of PNG/JPEG bytes, without decoding any pixel.

    Raises:
        ImageFormatError: empty data or an unsupported format string.
        CompressedFormatMismatch: the bytes are not the declared codec.
        ImageFormatError: a header Pillow cannot parse (truncated, corrupt).
    """
    import io

    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    _, codec, _ = parse_compressed_format(format_str)
    buf = _as_uint8_buffer(data)
    if buf.size == 0:
        raise ImageFormatError(f"compressed image ({format_str!r}) has empty data")
    found = compressed_magic(buf)
    if found != codec:
        raise CompressedFormatMismatch(
            f"compressed image labelled {codec} ({format_str!r}) holds "
            f"{found + ' bytes' if found else 'bytes of no PNG/JPEG signature'}"
        )
    try:
        # Image.open reads the header only; the pixels are decoded by load(), never called here
        with PILImage.open(io.BytesIO(buf.tobytes()), formats=[codec.upper()]) as im:
            width, height = im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageFormatError(f"unreadable {codec} header ({exc})") from None
    return int(height), int(width)


@dataclass(frozen=True)
class EncodingInfo:
    """Memory layout of one encoding: element dtype (little-endian) and channels per pixel."""

    dtype: np.dtype
    channels: int

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


_U8, _U16, _F32 = np.dtype("<u1"), np.dtype("<u2"), np.dtype("<f4")

ENCODINGS: dict[str, EncodingInfo] = {
    "rgb8": EncodingInfo(_U8, 3),
    "bgr8": EncodingInfo(_U8, 3),
    "rgba8": EncodingInfo(_U8, 4),
    "bgra8": EncodingInfo(_U8, 4),
    "mono8": EncodingInfo(_U8, 1),
    "8UC1": EncodingInfo(_U8, 1),
    "mono16": EncodingInfo(_U16, 1),
    "16UC1": EncodingInfo(_U16, 1),
    "32FC1": EncodingInfo(_F32, 1),
    "32FC3": EncodingInfo(_F32, 3),
    "uyvy": EncodingInfo(_U8, 2),
    "yuv422": EncodingInfo(_U8, 2),
    "yuyv": EncodingInfo(_U8, 2),
    "yuv422_yuy2": EncodingInfo(_U8, 2),
}
"""Every encoding :func:`decode_image` / :func:`encode_image` accept."""

# encoding -> cv2 conversion code to RGB (None: already RGB)
_TO_RGB: dict[str, int | None] = {
    "rgb8": None,
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "8UC1": cv2.COLOR_GRAY2RGB,
    "mono16": cv2.COLOR_GRAY2RGB,  # after >> 8
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "yuyv": cv2.COLOR_YUV2RGB_YUY2,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
}
COLOR_ENCODINGS = tuple(_TO_RGB)
"""Encodings :func:`to_rgb8` can turn into an RGB image (16UC1/32FC* are not colour)."""

_HOST_BIG_ENDIAN = sys.byteorder == "big"


def encoding_info(encoding: str) -> EncodingInfo:
    """Layout of ``encoding``; raises :class:`ImageFormatError` listing the supported ones."""
    try:
        return ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise ImageFormatError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}"
        ) from None


def _as_uint8_buffer(data) -> np.ndarray:
    """A 1-D uint8 view of any bytes-like ``data`` (bytes, bytearray, memoryview,
    array.array('B'), numpy array); a list of ints is copied."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def decode_image(
    encoding: str, height: int, width: int, step: int, data, is_bigendian: int = 0
) -> np.ndarray:
    """Interpret a raw ``sensor_msgs/Image`` buffer as a numpy array.

    Args:
        encoding: one of :data:`ENCODINGS`.
        height, width: image size in pixels (both > 0).
        step: bytes per row, >= ``width * bytes_per_pixel`` (extra bytes are row padding).
        data: bytes-like buffer of exactly ``step * height`` bytes.
        is_bigendian: non-zero when multi-byte elements (16UC1, 32FC1, ...) are big-endian.

    Returns:
        The array described in the module table, in native byte order. It is a zero-copy
        view of ``data`` (hence possibly read-only and non-contiguous when rows are padded)
        except for big-endian multi-byte data on a little-endian host (converted) and rows
        whose padding leaves elements unaligned (copied).

    Raises:
        ImageFormatError: unsupported encoding, zero or negative size, empty data,
            ``step`` too small, or ``len(data) != step * height``.
    """
    info = encoding_info(encoding)
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ImageFormatError(f"{encoding} image has zero/negative size {height}x{width}")
    row_bytes = width * info.bytes_per_pixel
    if step < row_bytes:
        raise ImageFormatError(
            f"{encoding} image step {step} < width {width} x {info.bytes_per_pixel} bytes/pixel"
            f" = {row_bytes}"
        )
    if encoding in ("uyvy", "yuv422", "yuyv", "yuv422_yuy2") and width % 2:
        raise ImageFormatError(f"{encoding} (4:2:2) needs an even width, got {width}")
    buf = _as_uint8_buffer(data)
    if buf.size == 0:
        raise ImageFormatError(f"{encoding} {height}x{width} image has empty data")
    if buf.size != step * height:
        raise ImageFormatError(
            f"{encoding} {height}x{width} image: data has {buf.size} bytes, expected step"
            f" {step} x height {height} = {step * height}"
        )
    rows = buf.reshape(height, step)
    if step != row_bytes:
        rows = rows[:, :row_bytes]
    big = bool(is_bigendian) and info.dtype.itemsize > 1
    dtype = info.dtype.newbyteorder(">") if big else info.dtype
    arr = rows.view(dtype)
    shape = (height, width) if info.channels == 1 else (height, width, info.channels)
    arr = arr.reshape(shape)
    if big != _HOST_BIG_ENDIAN and info.dtype.itemsize > 1:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    elif not arr.flags.aligned:  # padding not a multiple of the element size
        arr = arr.copy()
    return arr


def encode_image(array: np.ndarray, encoding: str, is_bigendian: bool = False):
    """Serialise ``array`` as the raw buffer of a ``sensor_msgs/Image`` in ``encoding``.

    Inverse of :func:`decode_image`: ``decode_image(enc, h, w, *encode_image(x, enc))`` equals
    ``x`` bit for bit (NaN payloads included).

    Args:
        array: shaped and typed as in the module table ((H, W) or (H, W, 1) for one channel).
        encoding: one of :data:`ENCODINGS`.
        is_bigendian: write multi-byte elements big-endian (the message's ``is_bigendian``
            must then be 1).

    Returns:
        ``(step, data)``: ``step = width * bytes_per_pixel`` (no padding) and a bytes-like
        1-D uint8 numpy array of ``step * height`` bytes (it may share memory with ``array``
        when that is already contiguous and in the requested byte order).

    Raises:
        ImageFormatError: unsupported encoding, or dtype/shape not matching the encoding.
    """
    info = encoding_info(encoding)
    arr = np.asarray(array)
    if arr.dtype.kind != info.dtype.kind or arr.dtype.itemsize != info.dtype.itemsize:
        raise ImageFormatError(f"{encoding} needs dtype {info.dtype.name}, got {arr.dtype.name}")
    if info.channels == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    expected_ndim = 2 if info.channels == 1 else 3
    if arr.ndim != expected_ndim or (info.channels > 1 and arr.shape[2] != info.channels):
        want = "(H, W)" if info.channels == 1 else f"(H, W, {info.channels})"
        raise ImageFormatError(f"{encoding} needs an array of shape {want}, got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageFormatError(f"{encoding} image has zero size {arr.shape[:2]}")
    if encoding in ("uyvy", "yuv422", "yuyv", "yuv422_yuy2") and arr.shape[1] % 2:
        raise ImageFormatError(f"{encoding} (4:2:2) needs an even width, got {arr.shape[1]}")
    target = info.dtype.newbyteorder(">" if is_bigendian else "<")
    arr = np.ascontiguousarray(arr, dtype=target)
    return arr.shape[1] * info.bytes_per_pixel, arr.reshape(-1).view(np.uint8)


def to_rgb8(array: np.ndarray, encoding: str) -> np.ndarray:
    """Convert a decoded image to the pipeline input: (H, W, 3) uint8 RGB.

    ``rgb8`` is returned unchanged (no copy); bgr8/rgba8/bgra8 are reordered, mono8 becomes
    grey RGB, mono16 keeps its high byte, uyvy/yuyv (4:2:2) are converted with OpenCV
    (BT.601, as ``cv2.COLOR_YUV2RGB_UYVY``/``_YUY2``).

    Raises:
        ImageFormatError: non-colour encoding (16UC1, 32FC1, 32FC3) or unsupported encoding.
    """
    if encoding not in _TO_RGB:
        if encoding in ENCODINGS:
            raise ImageFormatError(
                f"{encoding} is not a colour encoding; RGB input needs one of"
                f" {', '.join(COLOR_ENCODINGS)}"
            )
        encoding_info(encoding)  # raises with the list
    code = _TO_RGB[encoding]
    if code is None:
        return array
    if encoding == "mono16":
        array = (array >> 8).astype(np.uint8)
    if not array.flags.c_contiguous and encoding in ("uyvy", "yuv422", "yuyv", "yuv422_yuy2"):
        array = np.ascontiguousarray(array)
    return cv2.cvtColor(array, code)


def image_to_rgb8(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data,
    is_bigendian: int = 0,
    max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS,
) -> np.ndarray:
    """:func:`decode_image` then :func:`to_rgb8`: raw colour buffer -> (H, W, 3) uint8 RGB.

    The declared size is checked against ``max_pixels`` first (:func:`check_input_pixels`,
    None: no limit), before the buffer is read or the RGB copy allocated.
    """
    check_input_pixels(height, width, max_pixels)
    return to_rgb8(decode_image(encoding, height, width, step, data, is_bigendian), encoding)


# --------------------------------------------------------------------------- compressed


def parse_compressed_format(format_str: str) -> tuple[str, str, str]:
    """Split an image_transport ``CompressedImage.format`` string.

    Accepts the current form ``"<orig>; <codec> compressed <target>"`` (e.g.
    ``"rgb8; jpeg compressed bgr8"``) and the legacy bare ``"jpeg"``/``"png"``.

    Returns:
        ``(original_encoding or "", codec in {"jpeg", "png"}, stored channel order "bgr8"
        or "rgb8" or "" when unknown/legacy)``.

    Raises:
        ImageFormatError: compressedDepth/unknown codecs (message names the format).
    """
    fmt = (format_str or "").strip().lower()
    if "compresseddepth" in fmt or "rvl" in fmt:
        raise ImageFormatError(
            f"compressed format {format_str!r} is a depth transport, not a colour image"
        )
    original, _, rest = fmt.rpartition(";") if ";" in fmt else ("", "", fmt)
    words = rest.split()
    codec = words[0] if words else ""
    if codec == "jpg":
        codec = "jpeg"
    if codec not in ("jpeg", "png"):
        raise ImageFormatError(
            f"unsupported compressed image format {format_str!r}; expected jpeg or png"
        )
    target = words[2] if len(words) >= 3 and words[1] == "compressed" else ""
    return original.strip(), codec, target


def decode_compressed(
    format_str: str, data, max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS
) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG/PNG) into (H, W, 3) uint8 RGB.

    Follows compressed_image_transport: the stored channels are BGR unless the format says
    ``"compressed rgb8"``/``"compressed rgba8"``. Grey and 16-bit images become 8-bit grey RGB.
    The header is checked first (:func:`compressed_size`): magic of the declared codec and at
    most ``max_pixels`` pixels (None: no limit), before any pixel is allocated.

    Raises:
        ImageFormatError: empty or undecodable bytes, or an unsupported format string;
            :class:`CompressedFormatMismatch`, :class:`InputTooLargeError` (subclasses).
    """
    _, codec, target = parse_compressed_format(format_str)
    buf = _as_uint8_buffer(data)
    height, width = compressed_size(format_str, buf)
    check_input_pixels(height, width, max_pixels)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageFormatError(
            f"could not decode {buf.size} bytes as {codec} (format {format_str!r})"
        )
    if target.startswith("rgb"):
        return img
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90):
    """Compress (H, W, 3) uint8 RGB as image_transport would publish it.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        fmt: ``"jpeg"`` or ``"png"``.
        quality: JPEG quality 1..100 (ignored for PNG, which uses compression level 3).

    Returns:
        ``(format_str, data)`` e.g. ``("rgb8; jpeg compressed bgr8", bytes)``.

    Raises:
        ImageFormatError: bad shape/dtype, unknown ``fmt``, or quality out of range.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageFormatError(
            f"encode_compressed needs (H, W, 3) uint8 RGB, got {rgb.dtype} {rgb.shape}"
        )
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt == "jpeg":
        if not 1 <= int(quality) <= 100:
            raise ImageFormatError(f"JPEG quality must be in 1..100, got {quality}")
        params, ext = [cv2.IMWRITE_JPEG_QUALITY, int(quality)], ".jpg"
    elif fmt == "png":
        params, ext = [cv2.IMWRITE_PNG_COMPRESSION, 3], ".png"
    else:
        raise ImageFormatError(f"unsupported compression {fmt!r}; expected 'jpeg' or 'png'")
    ok, enc = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:  # pragma: no cover - OpenCV failure
        raise ImageFormatError(f"OpenCV failed to encode {rgb.shape} image as {fmt}")
    return f"rgb8; {fmt} compressed bgr8", enc.tobytes()
