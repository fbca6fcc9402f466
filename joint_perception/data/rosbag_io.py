"""Read and write rosbag2 recordings (sqlite3 and MCAP) of RGB-D cameras, without ROS.

Uses the pure-Python ``rosbags`` library, so it runs in the ROS-free core. Reading follows a
RealSense-style topic layout (:class:`BagTopics`): colour image (raw or compressed), its
camera_info, and depth aligned to colour. :func:`iter_frames` yields one :class:`BagFrame`
per colour image, paired with the depth image of the same header stamp and the colour
camera_info of the same stamp (else the latest one seen). :class:`BagWriter` writes any
message atomically into a new bag; :func:`image_msg`, :func:`compressed_image_msg`,
:func:`camera_info_msg` and :func:`pointcloud2_msg` build sensor_msgs messages from plain
fields. Depth conventions follow REP 118 (32FC1 metres; 16UC1 millimetres, 0 = invalid).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from joint_perception.image_codec import (
    decode_compressed,
    decode_image,
    encode_compressed,
    encode_image,
    to_rgb8,
)
from joint_perception.io_utils import sha256_file

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
STORAGES = ("mcap", "sqlite3")


@dataclass(frozen=True)
class BagTopics:
    """Topic names of an RGB-D recording (RealSense ``rs_launch`` defaults with alignment)."""

    color: str = "/camera/color/image_raw"
    color_compressed: str = "/camera/color/image_raw/compressed"
    color_info: str = "/camera/color/camera_info"
    depth: str = "/camera/aligned_depth_to_color/image_raw"
    depth_info: str = "/camera/aligned_depth_to_color/camera_info"


@dataclass
class BagFrame:
    """One colour frame of a recording.

    Attributes:
        stamp_ns: header stamp of the colour image, nanoseconds since the epoch.
        frame_id: header frame_id of the colour image (its optical frame, REP 103).
        rgb: (H, W, 3) uint8 RGB.
        K: (3, 3) float64 intrinsics of the colour image (from CameraInfo.k).
        depth: (H, W) float32 metres along the optical axis, NaN where invalid (0 in 16UC1,
            0/NaN/inf in 32FC1), or None when the bag has no depth of this stamp.
        distortion_model, D: from the colour camera_info (the core assumes rectified images).
    """

    stamp_ns: int
    frame_id: str
    rgb: np.ndarray
    K: np.ndarray
    depth: np.ndarray | None
    distortion_model: str = ""
    D: np.ndarray | None = None


_TYPESTORE = None


def typestore():
    """The shared rosbags typestore (ROS 2 Kilted message definitions, same as Jazzy)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore

        _TYPESTORE = get_typestore(Stores.ROS2_KILTED)
    return _TYPESTORE


def stamp_to_ns(stamp) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _open_reader(bag_path):
    from rosbags.rosbag2 import Reader

    path = Path(bag_path)
    if not path.exists():
        raise FileNotFoundError(f"rosbag2 not found: {path}")
    if not path.is_dir() or not (path / "metadata.yaml").exists():
        raise ValueError(f"{path} is not a rosbag2 directory (no metadata.yaml)")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises ReaderError and plain errors for bad files
        raise ValueError(f"cannot open rosbag2 {path}: {exc}") from exc
    return reader


def depth_to_metres(array: np.ndarray, encoding: str, source: str = "") -> np.ndarray:
    """Depth image -> (H, W) float32 metres with NaN for invalid pixels (REP 118).

    ``16UC1``/``mono16`` are millimetres with 0 invalid; ``32FC1`` is metres with 0, NaN and
    inf invalid.

    Raises:
        ValueError: for another encoding (naming ``source``).
    """
    if encoding in ("16UC1", "mono16"):
        out = array.astype(np.float32) / np.float32(1000.0)
        out[array == 0] = np.nan
        return out
    if encoding == "32FC1":
        out = np.array(array, dtype=np.float32)
        out[~np.isfinite(out) | (out <= 0)] = np.nan
        return out
    raise ValueError(f"unsupported depth encoding {encoding!r}{source}; expected 16UC1 or 32FC1")


def _k_of(info) -> np.ndarray:
    K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"camera_info has no valid intrinsics (k = {list(info.k)})")
    return K


def iter_frames(
    bag_path: str | os.PathLike,
    topics: BagTopics = BagTopics(),
    use_compressed: bool = False,
    max_lag: int = 4,
) -> Iterator[BagFrame]:
    """Yield the colour frames of a rosbag2 recording in order, with K and depth.

    A colour frame is held until its depth (same header stamp) has arrived or ``max_lag``
    newer colour frames have been read, so depth recorded slightly after its colour image
    is still paired. K comes from the colour camera_info of the same stamp when present,
    else from the latest colour camera_info read so far.

    Args:
        bag_path: rosbag2 directory (metadata.yaml + .db3 or .mcap file).
        topics: topic names.
        use_compressed: read ``topics.color_compressed`` (JPEG/PNG) instead of raw images.
        max_lag: frames to wait for a late depth image.

    Raises:
        FileNotFoundError: the bag does not exist.
        ValueError: not a bag, colour topic or camera_info topic missing, bad encodings
            (the message names the bag and topic).
    """
    path = Path(bag_path)
    color_topic = topics.color_compressed if use_compressed else topics.color
    reader = _open_reader(path)
    try:
        present = {c.topic for c in reader.connections}
        for needed in (color_topic, topics.color_info):
            if needed not in present:
                raise ValueError(
                    f"{path}: topic {needed} not in the bag (topics: {sorted(present)})"
                )
        wanted = [
            c
            for c in reader.connections
            if c.topic in (color_topic, topics.color_info, topics.depth)
        ]
        ts = typestore()
        pending: list[tuple[int, Any]] = []  # (stamp, colour msg) in arrival order
        depth_by_stamp: dict[int, Any] = {}
        info_by_stamp: dict[int, Any] = {}
        latest_info = None

        def emit(stamp: int, msg) -> BagFrame:
            info = info_by_stamp.get(stamp, latest_info)
            where = f" in {path} topic {color_topic} at stamp {stamp}"
            if use_compressed:
                rgb = decode_compressed(msg.format, msg.data)
            else:
                arr = decode_image(
                    msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian
                )
                rgb = np.array(to_rgb8(arr, msg.encoding), dtype=np.uint8, copy=True)
            dmsg = depth_by_stamp.pop(stamp, None)
            depth = None
            if dmsg is not None:
                darr = decode_image(
                    dmsg.encoding, dmsg.height, dmsg.width, dmsg.step, dmsg.data, dmsg.is_bigendian
                )
                depth = depth_to_metres(darr, dmsg.encoding, f" in {path} topic {topics.depth}")
            try:
                K = _k_of(info)
            except ValueError as exc:
                raise ValueError(f"{exc}{where}") from exc
            return BagFrame(
                stamp_ns=stamp,
                frame_id=msg.header.frame_id,
                rgb=rgb,
                K=K,
                depth=depth,
                distortion_model=info.distortion_model,
                D=np.asarray(info.d, dtype=np.float64).copy(),
            )

        for conn, _t, raw in reader.messages(connections=wanted):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            stamp = stamp_to_ns(msg.header.stamp)
            if conn.topic == topics.color_info:
                latest_info = msg
                info_by_stamp[stamp] = msg
            elif conn.topic == topics.depth:
                depth_by_stamp[stamp] = msg
            else:
                pending.append((stamp, msg))
            # emit frames whose depth is in, or that waited long enough
            while pending and latest_info is not None:
                s0, m0 = pending[0]
                if s0 in depth_by_stamp or len(pending) > max_lag:
                    pending.pop(0)
                    yield emit(s0, m0)
                    for d in (depth_by_stamp, info_by_stamp):  # forget older stamps
                        for k in [k for k in d if k < s0]:
                            del d[k]
                else:
                    break
        if pending and latest_info is None:
            raise ValueError(f"{path}: no message on {topics.color_info}, cannot give intrinsics")
        for s0, m0 in pending:
            yield emit(s0, m0)
    finally:
        reader.close()


def bag_info(bag_path: str | os.PathLike) -> dict[str, Any]:
    """Summary of a rosbag2: ``storage`` id, ``message_count``, ``start_ns``, ``end_ns``,
    ``duration_s``, and ``topics`` = {name: {"type": msgtype, "count": n}}.

    Raises:
        FileNotFoundError / ValueError: as :func:`iter_frames`.
    """
    import yaml

    path = Path(bag_path)
    reader = _open_reader(path)
    try:
        meta = yaml.safe_load((path / "metadata.yaml").read_text())
        storage = meta.get("rosbag2_bagfile_information", {}).get("storage_identifier", "")
        topics = {
            c.topic: {"type": c.msgtype, "count": int(c.msgcount)} for c in reader.connections
        }
        return {
            "path": str(path),
            "storage": storage,
            "message_count": int(reader.message_count),
            "start_ns": int(reader.start_time) if reader.message_count else 0,
            "end_ns": int(reader.end_time) if reader.message_count else 0,
            "duration_s": reader.duration / 1e9 if reader.message_count else 0.0,
            "topics": topics,
        }
    finally:
        reader.close()


def bag_sha256(bag_path: str | os.PathLike) -> str:
    """Hex SHA-256 identifying a bag directory's content: the hash of the sorted
    ``"<relative path> <file sha256>\\n"`` lines of all its files (a single file is hashed
    directly).

    Raises:
        FileNotFoundError: the path does not exist.
    """
    path = Path(bag_path)
    if not path.exists():
        raise FileNotFoundError(f"rosbag2 not found: {path}")
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()} {sha256_file(f)}\n".encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------ messages


def header(stamp_ns: int, frame_id: str):
    """``std_msgs/Header`` for an integer nanosecond stamp."""
    ts = typestore()
    Time = ts.types["builtin_interfaces/msg/Time"]
    Header = ts.types["std_msgs/msg/Header"]
    sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
    return Header(stamp=Time(sec=sec, nanosec=nsec), frame_id=str(frame_id))


def image_msg(header_stamp_ns: int, frame_id: str, array: np.ndarray, encoding: str):
    """``sensor_msgs/Image`` from an array (shape/dtype per ``image_codec`` for ``encoding``,
    e.g. (H, W, 3) uint8 for rgb8, (H, W) uint16 for 16UC1 mm, (H, W) float32 for 32FC1 m)."""
    step, data = encode_image(array, encoding)
    arr = np.asarray(array)
    Image = typestore().types[IMAGE]
    return Image(
        header=header(header_stamp_ns, frame_id),
        height=int(arr.shape[0]),
        width=int(arr.shape[1]),
        encoding=encoding,
        is_bigendian=0,
        step=int(step),
        data=np.array(data, dtype=np.uint8, copy=True),
    )


def compressed_image_msg(
    header_stamp_ns: int, frame_id: str, rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90
):
    """``sensor_msgs/CompressedImage`` (image_transport format string) from (H, W, 3) uint8 RGB."""
    format_str, data = encode_compressed(rgb, fmt, quality)
    Compressed = typestore().types[COMPRESSED]
    return Compressed(
        header=header(header_stamp_ns, frame_id),
        format=format_str,
        data=np.frombuffer(bytes(data), dtype=np.uint8).copy(),
    )


def camera_info_msg(
    header_stamp_ns: int,
    frame_id: str,
    K: np.ndarray,
    height: int,
    width: int,
    D: Sequence[float] | None = None,
    distortion_model: str = "plumb_bob",
):
    """``sensor_msgs/CameraInfo`` of a rectified pinhole camera: ``K`` 3x3 (pixels),
    ``R`` identity, ``P = [K | 0]``, ``D`` zeros (5 for plumb_bob) unless given.

    Raises:
        ValueError: for a K that is not 3x3 with positive focal lengths.
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K must be 3x3 with positive focal lengths, got {K.tolist()}")
    ts = typestore()
    P = np.zeros((3, 4))
    P[:, :3] = K
    d = np.zeros(5) if D is None else np.asarray(D, dtype=np.float64)
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    return ts.types[CAMERA_INFO](
        header=header(header_stamp_ns, frame_id),
        height=int(height),
        width=int(width),
        distortion_model=distortion_model,
        d=d,
        k=K.reshape(-1).copy(),
        r=np.eye(3).reshape(-1),
        p=P.reshape(-1),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def pointcloud2_msg(
    header_stamp_ns: int,
    frame_id: str,
    height: int,
    width: int,
    fields: Sequence[tuple[str, int, int, int]],
    point_step: int,
    data,
    is_dense: bool = False,
):
    """``sensor_msgs/PointCloud2`` from plain fields.

    Args:
        fields: ``(name, offset, datatype, count)`` with PointField datatype codes
            (7 = FLOAT32, 6 = UINT32, ...).
        point_step: bytes per point; ``row_step = point_step * width``.
        data: bytes-like of ``point_step * width * height`` bytes, little-endian.

    Raises:
        ValueError: when the data size does not match the layout.
    """
    buf = np.frombuffer(
        bytes(data) if not isinstance(data, np.ndarray) else data.tobytes(), dtype=np.uint8
    )
    if buf.size != point_step * width * height:
        raise ValueError(
            f"PointCloud2 data has {buf.size} bytes, expected point_step {point_step} x "
            f"{width} x {height} = {point_step * width * height}"
        )
    ts = typestore()
    PointField = ts.types["sensor_msgs/msg/PointField"]
    return ts.types[POINTCLOUD2](
        header=header(header_stamp_ns, frame_id),
        height=int(height),
        width=int(width),
        fields=[
            PointField(name=n, offset=int(o), datatype=int(t), count=int(c))
            for n, o, t, c in fields
        ],
        is_bigendian=False,
        point_step=int(point_step),
        row_step=int(point_step * width),
        data=buf.copy(),
        is_dense=bool(is_dense),
    )


# ------------------------------------------------------------------------------ writer


class BagWriter:
    """Write a new rosbag2 atomically: the bag appears at ``path`` complete, or not at all.

    Usage::

        with BagWriter("out/run1", storage="mcap") as w:
            w.write("/camera/color/image_raw", IMAGE, image_msg(t, "cam", rgb, "rgb8"), t)

    Connections are registered per topic on first write (a later write of another type to
    the same topic is refused). The bag is written into a temporary directory next to
    ``path`` and renamed on a clean exit; on an exception it is deleted.

    Args:
        path: bag directory to create.
        storage: ``"mcap"`` or ``"sqlite3"``.
        overwrite: replace an existing bag at ``path`` (otherwise FileExistsError).

    Raises:
        ValueError: unknown storage. FileExistsError: ``path`` exists and not ``overwrite``.
    """

    def __init__(self, path: str | os.PathLike, storage: str = "mcap", overwrite: bool = False):
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        self.path = Path(path)
        self.storage = storage
        self.overwrite = overwrite
        self._writer = None
        self._tmpdir: Path | None = None
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if self.path.exists() and not self.overwrite:
            raise FileExistsError(f"{self.path} exists (overwrite it: overwrite=True, --overwrite)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self._tmpdir / self.path.name, version=8, storage_plugin=plugin)
        self._writer.open()
        return self

    def write(self, topic: str, msgtype: str, msg, timestamp_ns: int) -> None:
        """Serialise ``msg`` (a rosbags message object of ``msgtype``) to ``topic`` with
        receive time ``timestamp_ns``.

        Raises:
            RuntimeError: outside the ``with`` block. ValueError: type differs from the
            topic's earlier messages.
        """
        if self._writer is None:
            raise RuntimeError("BagWriter.write called outside its 'with' block")
        conn = self._connections.get(topic)
        ts = typestore()
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=ts)
            self._connections[topic] = conn
        elif conn.msgtype != msgtype:
            raise ValueError(f"topic {topic} has type {conn.msgtype}, cannot write {msgtype}")
        self._writer.write(conn, int(timestamp_ns), ts.serialize_cdr(msg, msgtype))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def __exit__(self, exc_type, exc, tb) -> None:
        writer, tmpdir = self._writer, self._tmpdir
        self._writer = None
        try:
            writer.close()
            if exc_type is None:
                if self.path.exists():  # overwrite: move the old bag away, then drop it
                    old = tmpdir / (self.path.name + ".old")
                    os.replace(self.path, old)
                os.replace(tmpdir / self.path.name, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(tmpdir)


MCAP_MAGIC = b"\x89MCAP0\r\n"
_MCAP_FOOTER = b"\x02" + (20).to_bytes(8, "little")  # opcode, record length


def _mcap_string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(4, "little") + data


def _mcap_record(op: int, content: bytes) -> bytes:
    return bytes([op]) + len(content).to_bytes(8, "little") + content


def recover_mcap(path: str | os.PathLike) -> int:
    """Make an MCAP file cut short by a crash or ``kill -9`` readable, in place.

    A writer killed before closing leaves the header and the complete records (chunks with
    schemas, channels and messages) followed by at most one incomplete record, and no summary
    or footer. This drops the incomplete record and appends a footer without a summary, which
    MCAP readers (``rosbags.rosbag2.Reader(path)`` on the ``.mcap`` file) answer by scanning the
    records. A file that already ends with the magic is left as it is; one killed before its
    header reached the disk (empty, or a part of the header) becomes an empty ros2 MCAP.

    Returns:
        The number of bytes cut (0 when the file was complete).

    Raises:
        ValueError: not an MCAP file (no leading magic).
    """
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        head = f.read(8)
        if head != MCAP_MAGIC and not MCAP_MAGIC.startswith(head):
            raise ValueError(f"{path}: not an MCAP file")
        if size >= 8 + 37 + 8:
            f.seek(-8, os.SEEK_END)
            if f.read(8) == MCAP_MAGIC:
                return 0
        pos, first_op = 8, None
        while head == MCAP_MAGIC and pos + 9 <= size:
            f.seek(pos)
            op = f.read(1)[0]
            end = pos + 9 + int.from_bytes(f.read(8), "little")
            if end > size or op == 0x02:  # incomplete, or a footer without its magic
                break
            first_op = op if first_op is None else first_op
            pos = end
        if first_op != 0x01:  # killed before even the header record reached the file
            pos = 0
        f.truncate(pos)
        f.seek(pos)
        if pos == 0:  # an empty ros2 MCAP: nothing had been recorded
            f.write(MCAP_MAGIC + _mcap_record(0x01, _mcap_string("ros2") + _mcap_string("")))
        f.write(_MCAP_FOOTER + bytes(20) + MCAP_MAGIC)
        f.flush()
        os.fsync(f.fileno())
    return size - pos
