"""sensor_msgs <-> numpy: Image, CompressedImage, CameraInfo, PointCloud2.

The only module that builds ROS messages for the core; the encoding/geometry/packing logic
lives in the ROS-free :mod:`joint_perception.image_codec`, :mod:`joint_perception.geometry`
and :mod:`joint_perception.pointcloud`. The readers (``*_to_*``) only use message
attributes, so they also accept the message objects of the ``rosbags`` library.

``msg.data`` is filled with ``array.array('B').frombytes(buffer)``: the message setter stores
an ``array.array('B')`` as is, and rclpy serialises it with one memcpy. Measured on the
2-core CI machine for 640x480x3 (921,600 bytes): frombytes 0.04-0.09 ms; ``bytes`` or
``bytearray`` 0.09 ms, but ~160 ms when ``ROS_PYTHON_CHECK_FIELDS=1`` (the setter then
checks every element in Python); ``array.array('B', arr.tobytes())`` 0.09-0.6 ms (two copies);
a ``memoryview`` ~86 ms (converted element by element).
"""

from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import (
    CameraInfo,
    CompressedImage,
    Image,
    PointCloud2,
    PointField,
    RegionOfInterest,
)

from joint_perception.geometry import scale_intrinsics, scale_projection, validate_intrinsics
from joint_perception.image_codec import (
    DEFAULT_MAX_INPUT_PIXELS,
    ImageFormatError,
    decode_compressed,
    decode_image,
    encode_compressed,
    encode_image,
    encoding_info,
    to_rgb8,
)
from joint_perception.pointcloud import PackedCloud, unpack


def to_byte_array(buf) -> array.array:
    """Copy any bytes-like/contiguous numpy buffer into an ``array.array('B')`` (one memcpy),
    the fastest value for a message's ``uint8[]`` field (see the module docstring)."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(buf).reshape(-1).view(np.uint8))
    return out


# ------------------------------------------------------------------------------- Image


def array_to_image_msg(arr: np.ndarray, encoding: str, header) -> Image:
    """Build a ``sensor_msgs/Image``.

    Args:
        arr: shaped/typed as :mod:`joint_perception.image_codec` documents for ``encoding``
            (e.g. (H, W) float32 for ``32FC1`` depth in metres, NaN invalid, REP 118).
        encoding: a supported encoding.
        header: ``std_msgs/Header`` to carry (the input image's, unchanged).

    Returns:
        Image with ``step = width * bytes_per_pixel`` and little-endian data.

    Raises:
        ImageFormatError: dtype/shape do not match the encoding.
    """
    step, data = encode_image(arr, encoding)
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(step)
    msg.data = to_byte_array(data)
    return msg


def image_msg_over_buffer(
    arr: np.ndarray, storage: array.array, encoding: str, header, msg: Image | None = None
) -> Image:
    """An Image whose ``data`` *is* ``storage`` (no copy): for outputs written in place into
    :class:`joint_perception.buffers.OutputBuffers` (``arr = buffers.array(name)``,
    ``storage = buffers.storage(name)``).

    The message is built with ``check_fields=True``, the only way the generated setter keeps
    an ``array.array`` instead of copying it; pass the previous frame's ``msg`` to reuse it
    (its header and fields are overwritten). Publish before the buffers are written again.

    Args:
        arr: (H, W) or (H, W, C) C-contiguous little-endian array viewing ``storage``,
            typed as ``encoding`` needs (e.g. (H, W) float32 for ``32FC1``).
        storage: the ``array.array('B')`` holding ``arr``'s bytes.
        encoding: a supported encoding.
        header: ``std_msgs/Header`` to carry.
        msg: an Image made by this function to reuse, or None.

    Raises:
        ImageFormatError: dtype/shape do not match the encoding, or ``storage`` does not have
            exactly ``arr``'s bytes.
    """
    info = encoding_info(encoding)
    if arr.dtype.kind != info.dtype.kind or arr.dtype.itemsize != info.dtype.itemsize:
        raise ImageFormatError(f"{encoding} needs dtype {info.dtype.name}, got {arr.dtype.name}")
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if arr.ndim not in (2, 3) or channels != info.channels:
        raise ImageFormatError(f"{encoding} needs {info.channels} channel(s), got {arr.shape}")
    if len(storage) != arr.nbytes or not arr.flags.c_contiguous:
        raise ImageFormatError(
            f"storage of {len(storage)} bytes does not hold the contiguous {arr.shape} array"
        )
    if msg is None:
        msg = Image(check_fields=True)
    msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(arr.shape[1]) * info.bytes_per_pixel
    msg.data = storage
    return msg


def image_msg_to_array(msg) -> np.ndarray:
    """Decode an Image message (zero-copy where possible); see
    :func:`joint_perception.image_codec.decode_image` for shapes and errors."""
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)


def image_msg_to_rgb(msg) -> np.ndarray:
    """Image message (rgb8, bgr8, rgba8, bgra8, mono8, mono16, uyvy/yuyv) -> (H, W, 3) uint8
    RGB. Raises ImageFormatError for non-colour or malformed images."""
    return to_rgb8(image_msg_to_array(msg), msg.encoding)


def compressed_msg_to_rgb(msg, max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS) -> np.ndarray:
    """CompressedImage (jpeg/png) -> (H, W, 3) uint8 RGB; ImageFormatError if undecodable,
    InputTooLargeError above ``max_pixels`` (checked on the header, before decoding),
    CompressedFormatMismatch when the bytes are not the declared codec."""
    return decode_compressed(msg.format, msg.data, max_pixels)


def frame_id_problem(frame_id: str) -> str | None:
    """Why a header's ``frame_id`` is unusable for the outputs (empty or blank: nothing can
    transform them), or None. The node skips such a frame with a rate-limited warning and
    counts it (``skipped_empty_frame_id``): REP 105 outputs need a frame."""
    if not isinstance(frame_id, str) or not frame_id.strip():
        return f"empty frame_id {frame_id!r}: outputs cannot be placed in the TF tree"
    return None


def rgb_to_compressed_msg(rgb: np.ndarray, header, fmt: str = "jpeg", quality: int = 90):
    """(H, W, 3) uint8 RGB -> CompressedImage as image_transport publishes it."""
    fmt_str, data = encode_compressed(rgb, fmt, quality)
    msg = CompressedImage()
    msg.header = header
    msg.format = fmt_str
    msg.data = to_byte_array(np.frombuffer(data, np.uint8))
    return msg


def compressed_msg(format_str: str, data: bytes, header) -> CompressedImage:
    """A ``sensor_msgs/CompressedImage`` with ``format`` and ``data`` as given (see
    :mod:`joint_perception.ros.transport_formats` for the image_transport formats)."""
    msg = CompressedImage()
    msg.header = header
    msg.format = format_str
    msg.data = to_byte_array(np.frombuffer(data, np.uint8))
    return msg


# -------------------------------------------------------------------------- CameraInfo


def _binning(b: int) -> int:
    return max(1, int(b))


def camera_info_image_size(msg) -> tuple[int, int]:
    """(height, width) of the images this CameraInfo describes, after its ROI and binning."""
    roi = msg.roi
    h = roi.height if roi.height > 0 else msg.height
    w = roi.width if roi.width > 0 else msg.width
    return h // _binning(msg.binning_y), w // _binning(msg.binning_x)


def _roi_binning_affine(msg) -> np.ndarray:
    """Pixel map full-resolution -> ROI/binned image, as ``image_geometry`` applies it:
    ``u' = (u - x_offset) / binning_x``."""
    bx, by = _binning(msg.binning_x), _binning(msg.binning_y)
    return np.array(
        [
            [1.0 / bx, 0.0, -msg.roi.x_offset / bx],
            [0.0, 1.0 / by, -msg.roi.y_offset / by],
            [0.0, 0.0, 1.0],
        ]
    )


def _has_roi_or_binning(msg) -> bool:
    r = msg.roi
    return bool(
        _binning(msg.binning_x) > 1
        or _binning(msg.binning_y) > 1
        or r.x_offset
        or r.y_offset
        or (r.width and r.width != msg.width)
        or (r.height and r.height != msg.height)
    )


def camera_info_to_K(msg) -> np.ndarray:
    """The 3x3 intrinsics of the images a CameraInfo describes (ROI and binning applied,
    as ``image_geometry.PinholeCameraModel`` does).

    Returns:
        (3, 3) float64 for an image of size :func:`camera_info_image_size`.

    Raises:
        ValueError: K all zeros (uncalibrated camera), NaN/inf, fx/fy <= 0, zero image size.
    """
    try:
        K = validate_intrinsics(msg.k)
    except ValueError as exc:
        raise ValueError(f"CameraInfo (frame {msg.header.frame_id!r}): {exc}") from None
    if msg.height <= 0 or msg.width <= 0:
        raise ValueError(
            f"CameraInfo (frame {msg.header.frame_id!r}) has zero image size "
            f"{msg.height}x{msg.width}"
        )
    if _has_roi_or_binning(msg):
        K = _roi_binning_affine(msg) @ K
    return K


def camera_info_is_distorted(msg) -> bool:
    """True when the CameraInfo has a non-zero distortion coefficient.

    The pipeline assumes rectified images (docs/contracts.md section 3): a distorted stream should
    come from the driver's or ``image_proc``'s ``image_rect`` topic instead.
    """
    return any(float(c) != 0.0 for c in msg.d)


def scaled_camera_info(msg, height: int, width: int) -> CameraInfo:
    """CameraInfo for the outputs published at (height, width).

    Same header and distortion model/coefficients and R; K and P scaled from the described
    image (ROI/binning applied) with the pixel-centre convention of
    :func:`joint_perception.geometry.scale_intrinsics`; ROI and binning reset (the output
    image is the whole described image, resized).

    Raises:
        ValueError: invalid K (see :func:`camera_info_to_K`) or P, non-positive size.
    """
    src = camera_info_image_size(msg)
    K = scale_intrinsics(camera_info_to_K(msg), src, (height, width))
    P = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
    if not np.any(P):  # some drivers leave P empty: use K
        P = np.hstack([camera_info_to_K(msg), np.zeros((3, 1))])
    elif _has_roi_or_binning(msg):
        P = _roi_binning_affine(msg) @ P
    P = scale_projection(P, src, (height, width))
    out = CameraInfo()
    out.header = msg.header
    out.height, out.width = int(height), int(width)
    out.distortion_model = msg.distortion_model
    out.d = list(msg.d)
    out.k = K.reshape(-1)
    out.r = np.asarray(msg.r, dtype=np.float64)
    out.p = P.reshape(-1)
    out.binning_x = out.binning_y = 0
    out.roi = RegionOfInterest()
    return out


def make_camera_info(K, height: int, width: int, header) -> CameraInfo:
    """A rectified (plumb_bob, zero distortion, R = I, P = [K | 0]) CameraInfo.

    Raises:
        ValueError: invalid K.
    """
    K = validate_intrinsics(K)
    msg = CameraInfo()
    msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = K.reshape(-1)
    msg.r = np.eye(3).reshape(-1)
    msg.p = np.hstack([K, np.zeros((3, 1))]).reshape(-1)
    return msg


# -------------------------------------------------------------------------- PointCloud2


def cloud_to_msg(packed: PackedCloud, header) -> PointCloud2:
    """Wrap a :class:`~joint_perception.pointcloud.PackedCloud` in a PointCloud2."""
    msg = _cloud_layout(PointCloud2(), packed, header)
    msg.data = to_byte_array(packed.data)
    return msg


def _cloud_layout(msg: PointCloud2, packed: PackedCloud, header) -> PointCloud2:
    """Set everything of ``msg`` but ``data`` from ``packed`` (its fields only when they
    differ, so a reused message keeps its PointField list)."""
    msg.header = header
    msg.height, msg.width = packed.height, packed.width
    if len(msg.fields) != len(packed.fields) or any(
        (a.name, a.offset, a.datatype, a.count) != (b.name, b.offset, b.datatype, b.count)
        for a, b in zip(msg.fields, packed.fields, strict=False)
    ):
        msg.fields = [
            PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
            for f in packed.fields
        ]
    msg.is_bigendian = packed.is_bigendian
    msg.point_step, msg.row_step = packed.point_step, packed.row_step
    msg.is_dense = packed.is_dense
    return msg


def cloud_msg_over_buffer(
    packed: PackedCloud, storage: array.array, header, msg: PointCloud2 | None = None
) -> PointCloud2:
    """A PointCloud2 whose ``data`` *is* ``storage`` (no copy): ``packed`` from
    :func:`joint_perception.pointcloud.pack_depth` with ``buffers=``, ``storage =
    buffers.storage(name)``. Reuses ``msg`` (made by this function) when given; see
    :func:`image_msg_over_buffer`.

    Raises:
        ValueError: ``storage`` is not ``packed.data``'s bytes.
    """
    if len(storage) != packed.data.nbytes:
        raise ValueError(f"storage of {len(storage)} bytes is not the cloud's {packed.data.nbytes}")
    msg = _cloud_layout(PointCloud2(check_fields=True) if msg is None else msg, packed, header)
    msg.data = storage
    return msg


class ScaledCameraInfoCache:
    """:func:`scaled_camera_info` / :func:`make_camera_info` computed once per distinct input
    CameraInfo (its calibration fields and size) and output size; later frames only get the
    new header. Not thread-safe (one per worker)."""

    def __init__(self) -> None:
        self._key = None
        self._msg: CameraInfo | None = None

    @staticmethod
    def _calibration(info) -> tuple:
        r = info.roi
        return (
            info.height,
            info.width,
            info.distortion_model,
            tuple(info.d),
            tuple(info.k),
            tuple(info.r),
            tuple(info.p),
            info.binning_x,
            info.binning_y,
            (r.x_offset, r.y_offset, r.height, r.width, r.do_rectify),
        )

    def get(self, info, K_out, height: int, width: int, header) -> CameraInfo:
        """The CameraInfo of outputs at (height, width): ``scaled_camera_info(info, ...)`` when
        ``info`` has a size, else ``make_camera_info(K_out, ...)``; header = ``header``.

        Raises:
            ValueError: as those two functions.
        """
        key = (self._calibration(info), int(height), int(width))
        if not (info.height and info.width):  # built from K_out: it is part of the key
            key = (key, np.asarray(K_out, dtype=np.float64).tobytes())
        if key != self._key or self._msg is None:
            if info.height and info.width:
                self._msg = scaled_camera_info(info, height, width)
            else:
                self._msg = make_camera_info(K_out, height, width, header)
            self._key = key
        self._msg.header = header
        return self._msg


def msg_to_cloud_arrays(msg) -> dict[str, np.ndarray]:
    """Every field of a PointCloud2 as ``{name: (height, width[, count]) array}``; see
    :func:`joint_perception.pointcloud.unpack` (errors included)."""
    return unpack(
        msg.data,
        msg.fields,
        msg.point_step,
        msg.height,
        msg.width,
        row_step=msg.row_step,
        is_bigendian=bool(msg.is_bigendian),
    )
