"""The byte formats of image_transport's ``compressed`` and ``compressedDepth`` transports.

ROS-free (numpy + OpenCV): the node publishes ``sensor_msgs/CompressedImage`` messages in
exactly these formats on ``<base>/compressed`` and ``<base>/compressedDepth``, so
image_transport subscribers (``republish``, ``image_view``), RViz's Image display and bag tools
decode them as they decode a camera driver's.

``compressed`` (compressed_image_transport): ``format`` is ``"<encoding>; <codec> compressed
<stored>"`` and ``data`` the JPEG/PNG file. Colour is stored BGR (``"rgb8; jpeg compressed
bgr8"``); single-channel images are stored as they are and the stored part is empty
(``"mono8; png compressed "``, trailing space included, as compressed_image_transport writes it).

``compressedDepth`` (compressed_depth_image_transport, PNG variant) for 32FC1 metres:
``format`` is ``"32FC1; compressedDepth png"`` and ``data`` a 12-byte header (little-endian
``int32 format = 0`` (INV_DEPTH), ``float32 A``, ``float32 B``) followed by a 16-bit PNG of the
quantised inverse depth ``q = A / d + B`` with ``A = z (z + 1)`` (``z`` = depth_quantization),
``B = 1 - A / depth_max``; ``q = 0`` marks no depth. The decoder computes ``d = A / (q - B)``
(``q != 0``), NaN for ``q == 0``. Consequences for the REP 117 special values: NaN, +Inf, -Inf,
depth <= 0 and depth beyond ``depth_max`` all decode as NaN; depth closer than
``A / (65535 - B)`` (0.152 m with the defaults) decodes as that distance. The quantisation step
at depth ``d`` is about ``d^2 / A``.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

#: compressedDepth header: int32 compression format (0 = INV_DEPTH), float32 A, float32 B.
DEPTH_HEADER = struct.Struct("<iff")
INV_DEPTH = 0


class TransportFormatError(ValueError):
    """An array or a message that the transport format cannot carry (message says why)."""


def compressed_format(encoding: str, codec: str) -> str:
    """The ``CompressedImage.format`` string compressed_image_transport writes.

    Args:
        encoding: source image encoding (``rgb8``, ``bgr8``, ``mono8``, ``mono16``).
        codec: ``"jpeg"`` or ``"png"``.

    Raises:
        TransportFormatError: unsupported encoding/codec pair (JPEG cannot hold 16-bit).
    """
    if codec not in ("jpeg", "png"):
        raise TransportFormatError(f"codec must be 'jpeg' or 'png', got {codec!r}")
    if encoding in ("rgb8", "bgr8"):
        return f"{encoding}; {codec} compressed bgr8"
    if encoding == "mono8":
        return f"mono8; {codec} compressed mono8" if codec == "jpeg" else "mono8; png compressed "
    if encoding == "mono16" and codec == "png":
        return "mono16; png compressed "
    raise TransportFormatError(f"{codec} cannot carry a {encoding} image")


def encode_compressed(
    array: np.ndarray, encoding: str, codec: str, jpeg_quality: int = 90, png_level: int = 3
) -> tuple[str, bytes]:
    """Compress an image as compressed_image_transport publishes it.

    Args:
        array: (H, W, 3) uint8 for ``rgb8``/``bgr8`` (channel order as the encoding says),
            (H, W) uint8 for ``mono8``, (H, W) uint16 for ``mono16``.
        encoding: the array's encoding.
        codec: ``"jpeg"`` (8-bit only) or ``"png"`` (lossless).
        jpeg_quality: 1..100.
        png_level: 0..9.

    Returns:
        ``(format, data)``.

    Raises:
        TransportFormatError: shape/dtype not matching ``encoding``, unsupported pair,
            parameter out of range.
    """
    fmt = compressed_format(encoding, codec)
    a = np.asarray(array)
    want = {"rgb8": (3, np.uint8), "bgr8": (3, np.uint8), "mono8": (2, np.uint8)}
    want["mono16"] = (2, np.uint16)
    ndim, dtype = want[encoding]
    if a.ndim != ndim or a.dtype != dtype or (ndim == 3 and a.shape[2] != 3) or a.size == 0:
        raise TransportFormatError(
            f"{encoding} needs a non-empty {'(H, W, 3)' if ndim == 3 else '(H, W)'} "
            f"{np.dtype(dtype).name} array, got {a.dtype} {a.shape}"
        )
    if encoding == "rgb8":
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    if codec == "jpeg":
        if not 1 <= int(jpeg_quality) <= 100:
            raise TransportFormatError(f"JPEG quality must be in 1..100, got {jpeg_quality}")
        ok, buf = cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        if not 0 <= int(png_level) <= 9:
            raise TransportFormatError(f"PNG level must be in 0..9, got {png_level}")
        ok, buf = cv2.imencode(".png", a, [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
    if not ok:  # pragma: no cover - OpenCV failure
        raise TransportFormatError(f"OpenCV could not encode a {encoding} image as {codec}")
    return fmt, buf.tobytes()


def depth_quantization_params(depth_max: float, depth_quantization: float) -> tuple[float, float]:
    """``(A, B)`` of compressedDepth, computed in float32 as the C++ encoder does.

    Raises:
        TransportFormatError: ``depth_max`` or ``depth_quantization`` not positive/finite.
    """
    if not (np.isfinite(depth_max) and depth_max > 0):
        raise TransportFormatError(f"depth_max must be a positive number, got {depth_max}")
    if not (np.isfinite(depth_quantization) and depth_quantization > 0):
        raise TransportFormatError(
            f"depth_quantization must be a positive number, got {depth_quantization}"
        )
    z = np.float32(depth_quantization)
    a = np.float32(z * (z + np.float32(1.0)))
    b = np.float32(np.float32(1.0) - a / np.float32(depth_max))
    return float(a), float(b)


def encode_compressed_depth(
    depth: np.ndarray,
    depth_max: float = 10.0,
    depth_quantization: float = 100.0,
    png_level: int = 3,
) -> tuple[str, bytes]:
    """Encode a 32FC1 depth image (metres) as compressed_depth_image_transport's PNG format.

    ``q = trunc(A / d + B)`` clamped to [1, 65535] for finite ``0 < d <= depth_max``, else 0.
    (The C++ encoder does not clamp: its conversion of depths closer than ``A / (65535 - B)``
    overflows; here they saturate at that distance.)

    Args:
        depth: (H, W) float32 metres, NaN/±Inf allowed (all become "no depth").
        depth_max: largest encoded depth (m).
        depth_quantization: ``z`` of ``A = z (z + 1)``.
        png_level: 0..9.

    Returns:
        ``("32FC1; compressedDepth png", header + PNG bytes)``.

    Raises:
        TransportFormatError: not a non-empty (H, W) float32 array; bad parameters.
    """
    d = np.asarray(depth)
    if d.ndim != 2 or d.dtype != np.float32 or d.size == 0:
        raise TransportFormatError(
            f"compressedDepth needs (H, W) float32 metres, got {d.dtype} {d.shape}"
        )
    if not 0 <= int(png_level) <= 9:
        raise TransportFormatError(f"PNG level must be in 0..9, got {png_level}")
    a, b = depth_quantization_params(depth_max, depth_quantization)
    valid = np.isfinite(d) & (d > 0) & (d <= np.float32(depth_max))
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.float32(a) / d + np.float32(b)
    q = np.where(valid, np.clip(q, 1.0, 65535.0), 0.0).astype(np.uint16)  # truncates, as C++
    ok, buf = cv2.imencode(".png", q, [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
    if not ok:  # pragma: no cover - OpenCV failure
        raise TransportFormatError("OpenCV could not encode the quantised depth as PNG")
    return "32FC1; compressedDepth png", DEPTH_HEADER.pack(INV_DEPTH, a, b) + buf.tobytes()


def decode_compressed_depth(format_str: str, data) -> np.ndarray:
    """Decode a compressedDepth message (PNG variant) back to metres.

    Returns:
        (H, W) float32 metres, NaN where no depth was encoded (32FC1), or the (H, W) uint16
        image as stored for a 16UC1 source.

    Raises:
        TransportFormatError: not a PNG compressedDepth message, short header, undecodable PNG.
    """
    encoding, _, rest = (format_str or "").partition(";")
    words = rest.split()
    if words and (words[0] != "compressedDepth" or (len(words) > 1 and words[1] != "png")):
        raise TransportFormatError(f"not a PNG compressedDepth format: {format_str!r}")
    raw = bytes(data)
    if len(raw) <= DEPTH_HEADER.size:
        raise TransportFormatError(f"compressedDepth data too short ({len(raw)} bytes)")
    fmt, a, b = DEPTH_HEADER.unpack_from(raw, 0)
    q = cv2.imdecode(np.frombuffer(raw[DEPTH_HEADER.size :], np.uint8), cv2.IMREAD_UNCHANGED)
    if q is None or q.dtype != np.uint16 or q.ndim != 2:
        raise TransportFormatError("compressedDepth payload is not a 16-bit single-channel PNG")
    if encoding.strip() != "32FC1":
        return q
    if fmt != INV_DEPTH:
        raise TransportFormatError(f"unknown compressedDepth format id {fmt}")
    out = np.full(q.shape, np.nan, dtype=np.float32)
    nz = q != 0
    out[nz] = np.float32(a) / (q[nz].astype(np.float32) - np.float32(b))
    return out
